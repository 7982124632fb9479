import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from modelserving import services
from modelserving.models import Generation


class Command(BaseCommand):
    help = "Sample one pair for a prompt through the platform (Celery worker and model servers) and wait for it."

    def add_arguments(self, parser):
        parser.add_argument("prompt")
        parser.add_argument("--system", default="", help="Optional system prompt.")
        parser.add_argument("--timeout", type=float, default=300.0, help="Seconds to wait for both responses.")

    def handle(self, *args, prompt, system, timeout, **options):
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        try:
            pair = services.pair_request(messages=messages)
        except ValidationError as error:  # NoActiveVariant too
            raise CommandError(" ".join(error.messages)) from error
        self.stdout.write(f"pair {pair.pk} ({pair.strategy}); waiting for both responses …")
        deadline = time.monotonic() + timeout
        while True:
            generations = list(pair.generations.select_related("variant").order_by("position"))
            if all(g.is_finished for g in generations):
                break
            if time.monotonic() > deadline:
                raise CommandError(f"pair {pair.pk}: not finished after {timeout:g} s "
                                   f"({', '.join(g.status for g in generations)}). Is a worker running?")
            time.sleep(0.2)
        for g in generations:
            self.stdout.write(
                f"[{g.position}] {g.variant.name} T={g.temperature} seed={g.seed} {g.status} "
                f"({g.completion_tokens} tokens, {g.latency_ms} ms, {g.attempts} tries)\n    "
                + (g.text.strip().replace("\n", "\n    ") if g.status == Generation.Status.DONE else g.error)
            )
        if any(g.status != Generation.Status.DONE for g in generations):
            raise CommandError(f"pair {pair.pk}: a generation failed.")
