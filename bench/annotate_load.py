"""Annotators under load: N simulated annotators judging over HTTP against gunicorn and PostgreSQL.

The benchmark seeds each annotator's dialogues with pre-generated pairs (both responses already
done, so no model time is counted), starts gunicorn, and lets N threads work like annotators:
load the next turn (GET /api/turns/next/), judge it (POST /api/turns/<id>/judgement/), and now
and then send the same judgement again, as a double click or a network retry would. It prints
judgements per second, p50/p95/p99 of loading the next turn and of submitting, and errors; then
it checks that every acknowledged judgement is in the database exactly once, as acknowledged.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tandem_bench .venv/bin/python bench/annotate_load.py
    .venv/bin/python bench/annotate_load.py --annotators 1 8 32 --judgements 320 --workers 4
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentile(values, q):
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = (len(ordered) - 1) * q
    low, high = int(index), min(int(index) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def seed(n_annotators: int, turns_each: int, run: str):
    """Users with tokens, and for each one ``turns_each`` judgeable turns (pairs already done)."""
    from django.db import transaction
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from accounts.services import user_create
    from annotation.models import Dialogue, Turn
    from modelserving.models import Generation, Pair, PolicyVariant

    variant, _ = PolicyVariant.objects.get_or_create(
        name="bench-seeded", defaults={"base_url": "http://127.0.0.1:9/v1", "model_name": "seeded",
                                       "temperature_min": 0.7, "temperature_max": 1.0, "is_active": False})
    tokens = []
    now = timezone.now()
    for index in range(n_annotators):
        user = user_create(username=f"bench-{run}-{index}", password="bench-password-42", role="annotator")
        tokens.append(Token.objects.create(user=user).key)
        with transaction.atomic():
            for number in range(turns_each):
                focus = "safety" if number % 3 == 0 else "helpfulness"
                dialogue = Dialogue.objects.create(annotator=user, focus=focus)
                messages = [{"role": "user", "content": f"Prompt {number} of annotator {index}"}]
                pair = Pair.objects.create(messages=messages, strategy="two_variants")
                generations = [Generation.objects.create(
                    pair=pair, position=position, variant=variant, model_name="seeded", messages=messages,
                    temperature=0.8, top_p=0.9, seed=position, max_tokens=64, status="done",
                    text=f"Response {position}: " + "lorem ipsum " * 40, finish_reason="stop",
                    completion_tokens=80, prompt_tokens=10, latency_ms=1, attempts=1,
                    started_at=now, finished_at=now) for position in (1, 2)]
                Turn.objects.create(dialogue=dialogue, index=0, user_message=messages[0]["content"], pair=pair,
                                    left_generation=random.choice(generations))
    return tokens


class Annotator(threading.Thread):
    def __init__(self, base_url: str, token: str, rng: random.Random, retry_share: float):
        super().__init__(daemon=True)
        self.base_url, self.token, self.rng, self.retry_share = base_url, token, rng, retry_share
        self.next_ms, self.submit_ms, self.errors = [], [], []
        self.acknowledged: dict[int, dict] = {}

    def run(self):
        import httpx

        headers = {"Authorization": f"Token {self.token}"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=60) as client:
            while True:
                started = time.perf_counter()
                response = client.get("/api/turns/next/")
                self.next_ms.append((time.perf_counter() - started) * 1000)
                if response.status_code == 204:
                    return
                if response.status_code != 200:
                    self.errors.append(f"next {response.status_code}")
                    return
                turn = response.json()
                body = {"point": self.rng.randint(1, 8), "time_spent_ms": self.rng.randint(2000, 30000)}
                body.update(self.safety_labels(body["point"]))
                for attempt in range(2 if self.rng.random() < self.retry_share else 1):
                    started = time.perf_counter()
                    answer = client.post(f"/api/turns/{turn['id']}/judgement/", json=body)
                    self.submit_ms.append((time.perf_counter() - started) * 1000)
                    expected = 201 if attempt == 0 else 200
                    if answer.status_code != expected:
                        self.errors.append(f"submit {answer.status_code}: {answer.text[:200]}")
                        return
                    self.acknowledged[turn["id"]] = answer.json()["judgement"]

    def safety_labels(self, point: int) -> dict:
        """Labels that never put an unsafe response above a safe one (sent for every turn: the
        helpfulness focus ignores them, the safety focus needs them)."""
        chosen_is_a = point <= 4
        chosen_safe = self.rng.random() < 0.8
        other_safe = chosen_safe and self.rng.random() < 0.5
        safe_a, safe_b = (chosen_safe, other_safe) if chosen_is_a else (other_safe, chosen_safe)
        return {"safe_a": safe_a, "safe_b": safe_b}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotators", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--judgements", type=int, default=320, help="per run, split among the annotators")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--retry-share", type=float, default=0.1, help="share of judgements sent twice")
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tandem_bench")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from annotation.models import Turn

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        sys.exit("This benchmark runs on PostgreSQL: set DATABASE_URL.")
    call_command("migrate", verbosity=0)
    run_id = time.strftime("%H%M%S")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "config.wsgi", "--bind", f"127.0.0.1:{args.port}",
         "--workers", str(args.workers), "--log-level", "warning"],
        cwd=ROOT, env=dict(os.environ), start_new_session=True)
    base_url = f"http://127.0.0.1:{args.port}"
    try:
        import httpx

        for _ in range(100):
            try:
                httpx.get(base_url + "/login/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        print(f"annotate load: gunicorn {args.workers} workers, PostgreSQL, {args.judgements} judgements per run, "
              f"{args.retry_share:.0%} sent twice")
        print(f"{'N':>3} {'judged':>7} {'per s':>7} | {'next p50':>8} {'p95':>6} {'p99':>6} | "
              f"{'submit p50':>10} {'p95':>6} {'p99':>6} | {'errors':>6} | exactly once")
        for n in args.annotators:
            turns_each = max(1, args.judgements // n)
            tokens = seed(n, turns_each, f"{run_id}-{n}")
            rng = random.Random(n)
            workers = [Annotator(base_url, token, random.Random(rng.random()), args.retry_share) for token in tokens]
            started = time.perf_counter()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            elapsed = time.perf_counter() - started
            acknowledged = {tid: j for w in workers for tid, j in w.acknowledged.items()}
            stored = Turn.objects.filter(dialogue__annotator__username__startswith=f"bench-{run_id}-{n}-",
                                         submitted_at__isnull=False)
            stored_ids = set(stored.values_list("id", flat=True))
            mismatched = [tid for tid, j in acknowledged.items()
                          if not _matches(Turn.objects.select_related("dialogue").get(pk=tid), j)]
            exactly_once = stored_ids == set(acknowledged) and not mismatched
            next_ms = [x for w in workers for x in w.next_ms]
            submit_ms = [x for w in workers for x in w.submit_ms]
            errors = [e for w in workers for e in w.errors]
            print(f"{n:>3} {len(acknowledged):>7} {len(acknowledged) / elapsed:>7.1f} | "
                  f"{percentile(next_ms, .5):>8.1f} {percentile(next_ms, .95):>6.1f} {percentile(next_ms, .99):>6.1f} | "
                  f"{percentile(submit_ms, .5):>10.1f} {percentile(submit_ms, .95):>6.1f} "
                  f"{percentile(submit_ms, .99):>6.1f} | {len(errors):>6} | "
                  f"{'yes' if exactly_once else 'NO'} ({len(stored_ids)} stored, {len(acknowledged)} acknowledged)")
            for error in errors[:5]:
                print("   error:", error)
        print("latencies in ms, measured by the clients; figures include the retried submissions (200s).")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _matches(turn, judgement: dict) -> bool:
    from annotation.workspace.selectors import sides
    from annotation.workspace.scale import to_point

    a, _ = sides(turn)
    choice = "A" if turn.chosen_generation_id == a.id else "B"
    return turn.is_judged and to_point(choice, turn.strength) == judgement["point"]


if __name__ == "__main__":
    main()
