"""Soak: N simulated annotators for M minutes against the production shape, with things breaking.

gunicorn + PostgreSQL (a throwaway database on the server in --server) + Redis (a private
redis-server on a free port) + one sampling worker with the embedded beat (the recovery sweeps) +
two model servers, one per variant (`transformers serve` on the tiny random-weight Llama that the
test suite builds with modelserving.local_models.build_tiny_llama: SmolLM2's tokenizer, 2 layers,
hidden size 64; its answers are noise, its timing is what a very small model gives on CPU). The
annotators are annotation.workspace.simulation's, over the public API (as `manage.py simulate_annotators`),
judging by length and retrying the requests that are safe to repeat.

While they work, the sampling worker is killed with SIGKILL every --kill-every seconds (its whole
process group: the messages it held stay unacknowledged in Redis for the visibility timeout, an
hour, so only the recovery sweep brings their generations back) and started again, and one model
server is stopped and started again once, halfway. At the end it prints judgements acknowledged
against stored (exactly once), generations still queued or running after the drain (must be 0),
failures by reason, and p50/p95 latencies per minute.

    .venv/bin/python bench/soak.py                       # 32 annotators, 10 minutes
    .venv/bin/python bench/soak.py --annotators 8 --minutes 3 --kill-every 60

Latencies depend on the machine: on a shared one they are noisy.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from core.statistics import percentile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PASSWORD = "soak-annotator-pw-7"


def reason(text: str) -> str:
    """A failure's words without its ids, ports and counts, so that alike ones group together."""
    text = re.sub(r"https?://\S+", "<url>", text)
    text = re.sub(r"/api/\S+", "<path>", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text[:160]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotators", type=int, default=32)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kill-every", type=float, default=120.0, help="seconds between kills of the worker")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server")
    parser.add_argument("--database", default="tandem_soak", help="dropped and created afresh")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--gunicorn-workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4, help="processes of the sampling worker")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()

    env = {key: value for key, value in os.environ.items() if key != "TANDEM_TEST_DATABASE_NAME"}
    env.update(DATABASE_URL=f"{args.server}/{args.database}", DJANGO_SETTINGS_MODULE="config.settings.test",
               TANDEM_VAR_DIR=str(ROOT / "var" / "bench" / "soak"), LOG_LEVEL="WARNING",
               # Sampling: a stuck request gives up in seconds, tries go on with backoff.
               SAMPLING_READ_TIMEOUT="20", SAMPLING_CONNECT_TIMEOUT="3", SAMPLING_LEASE_SECONDS="10",
               SAMPLING_MAX_ATTEMPTS="6", SAMPLING_BACKOFF_MAX="8",
               # The sweep every 5 s; queued 30 s with nothing behind it (above the backoff) or a
               # lease lapsed 5 s ago: sent again.
               RECOVERY_EVERY="5", RECOVERY_QUEUED_AFTER="30", RECOVERY_LAPSED_AFTER="5",
               RECOVERY_MAX_REQUEUES="5")
    Path(env["TANDEM_VAR_DIR"]).mkdir(parents=True, exist_ok=True)
    subprocess.run(["psql", "-X", "-q", f"{args.server}/postgres", "-c", f"DROP DATABASE IF EXISTS {args.database}"],
                   check=True)
    subprocess.run(["psql", "-X", "-q", f"{args.server}/postgres", "-c", f"CREATE DATABASE {args.database}"],
                   check=True)

    from bench.processes import CeleryWorker, ModelServer, RedisServer, WebServer

    redis = RedisServer().start()
    env["CELERY_BROKER_URL"] = redis.url
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from accounts.services import user_create
    from annotation.models import Turn
    from annotation.workspace.selectors import sides
    from annotation.workspace.simulation import PreferenceModel, SimulationConfig, length_preference, run_simulation
    from modelserving import services as modelserving
    from modelserving.local_models import build_tiny_llama, is_prepared
    from modelserving.models import Generation

    call_command("migrate", verbosity=0)
    tokenizer = settings.DEFAULT_MODEL_DIR if is_prepared(settings.DEFAULT_MODEL_DIR) else None
    model_dir = build_tiny_llama(ROOT / "var" / "test-models" / "tiny-llama", tokenizer_source=tokenizer)
    models = [ModelServer(model_dir).start() for _ in range(2)]
    for server in models:
        server.wait_ready()
    for name, server, low, high in (("cool", models[0], 0.5, 0.8), ("warm", models[1], 1.0, 1.3)):
        modelserving.variant_create(name=name, base_url=server.base_url, model_name=server.model_name,
                                    temperature_min=low, temperature_max=high, max_new_tokens=args.max_tokens)
    names = tuple(f"soak-{index}" for index in range(args.annotators))
    for name in names:
        user_create(username=name, password=PASSWORD, role="annotator")
    web = WebServer(env, workers=args.gunicorn_workers, threads=8, name="soak-gunicorn").start()

    def worker_start(generation: int) -> CeleryWorker:
        return CeleryWorker(env, concurrency=args.concurrency, queues="sampling", beat=True,
                            name=f"soak-worker-{generation}", purge=False).start(timeout=120)

    workers = [worker_start(0)]
    events: list[tuple[float, str]] = []
    started = time.monotonic()
    duration = args.minutes * 60
    config = SimulationConfig(base_url=web.url, usernames=names, password=PASSWORD,
                              model=PreferenceModel(preference=length_preference, noise=0.1), dialogues=10**6,
                              turns=3, focus="helpfulness", seed=7, timeout=300, retries=2, request_retries=8,
                              until=started + duration)
    print(f"soak: {args.annotators} simulated annotators for {args.minutes:g} min against gunicorn "
          f"({args.gunicorn_workers}×8) + PostgreSQL + Redis + 1 sampling worker ({args.concurrency} processes, "
          f"killed every {args.kill_every:g} s) + 2 tiny-Llama model servers ({args.max_tokens} new tokens; one "
          "restarted once)", flush=True)
    summaries = []
    annotators = threading.Thread(target=lambda: summaries.append(run_simulation(config)), daemon=True)
    epoch = time.time()
    annotators.start()
    try:
        next_kill, restarted = started + args.kill_every, False
        while time.monotonic() < started + duration:
            time.sleep(1)
            now = time.monotonic()
            if now >= next_kill and now < started + duration - 5:
                victim = workers[-1]
                os.killpg(victim.process.pid, signal.SIGKILL)
                victim.process.wait(timeout=30)
                events.append((now - started, f"SIGKILL the sampling worker (pid {victim.process.pid} and its pool)"))
                workers.append(worker_start(len(workers)))
                events.append((time.monotonic() - started, "sampling worker started again"))
                next_kill += args.kill_every
            if not restarted and now >= started + duration / 2 + 30:
                models[0].stop()
                events.append((time.monotonic() - started, "model server 'cool' stopped"))
                time.sleep(5)
                models[0].start().wait_ready()
                events.append((time.monotonic() - started, "model server 'cool' started again"))
                restarted = True
        annotators.join(timeout=600)
        drain_started = time.monotonic()
        deadline = drain_started + 180
        while Generation.objects.filter(status__in=["queued", "running"]).exists() and time.monotonic() < deadline:
            time.sleep(1)
        drained = time.monotonic() - drain_started
        summary = summaries[0] if summaries else None
        report(summary, events, epoch, started, drained, Turn, Generation, sides)
    finally:
        for process in [web, *workers, *models, redis]:
            process.stop()
        if not args.keep:
            from django.db import connections

            connections.close_all()
            subprocess.run(["psql", "-X", "-q", f"{args.server}/postgres", "-c",
                            f"DROP DATABASE IF EXISTS {args.database}"], check=False)


def report(summary, events, epoch, started, drained, Turn, Generation, sides):
    if summary is None:
        print("the annotators did not finish")
        return
    print("\nevents (minute:second since the start)")
    for at, what in events:
        print(f"  {int(at // 60):>2}:{int(at % 60):02d}  {what}")

    acknowledged = {turn_id: payload for r in summary.reports for turn_id, payload in r.acknowledged.items()}
    judged = {t.pk: t for t in Turn.objects.filter(submitted_at__isnull=False).select_related("pair")
              .prefetch_related("pair__generations")}
    as_sent = 0
    for turn_id, payload in acknowledged.items():
        turn = judged.get(turn_id)
        if turn is None:
            continue
        if payload.get("both_unusable"):
            as_sent += turn.both_unusable
        else:
            a, b = sides(turn)
            as_sent += turn.chosen_generation_id == (a if payload["choice"] == "A" else b).pk and \
                turn.strength == payload["strength"]
    missing = len(set(acknowledged) - set(judged))
    unacknowledged = len(set(judged) - set(acknowledged))
    exactly_once = missing == 0 and as_sent == len(acknowledged)
    print("\njudgements")
    print(f"  acknowledged {len(acknowledged)}, stored {len(judged)}; acknowledged and stored as sent {as_sent}; "
          f"acknowledged but missing {missing}; stored without an acknowledgement {unacknowledged} "
          f"→ exactly once: {'yes' if exactly_once else 'NO'}")
    stuck = Generation.objects.filter(status__in=["queued", "running"]).count()
    statuses = Counter(Generation.objects.values_list("status", flat=True))
    recovered = Generation.objects.filter(recoveries__gt=0).count()
    print(f"\ngenerations: {dict(sorted(statuses.items()))}; sent again by the sweep: {recovered}; "
          f"stuck at the end (queued or running, {drained:.0f} s after the annotators stopped): {stuck}")

    print("\nfailures by reason")
    generation_failures = Counter(reason(e) for e in Generation.objects.filter(status="failed")
                                  .values_list("error", flat=True))
    annotator_failures = Counter(reason(f.split(": ", 1)[-1]) for f in summary.failures)
    http_errors = Counter((what, status) for r in summary.reports for _, what, _, status in r.timings
                          if status == 0 or status >= 500)
    for title, counter in (("generations failed", generation_failures), ("annotators' turns given up",
                                                                          annotator_failures)):
        print(f"  {title}: {sum(counter.values())}")
        for text, n in counter.most_common(8):
            print(f"    {n:>5}  {text}")
    print(f"  requests that met a connection error or a 5xx (then retried when safe): {sum(http_errors.values())}"
          + "".join(f"; {what} {'conn' if status == 0 else status}: {n}" for (what, status), n in
                    sorted(http_errors.items())))

    print("\nlatency per minute (seconds, measured by the clients): p50 / p95")
    per_minute = defaultdict(lambda: defaultdict(list))
    for r in summary.reports:
        for at, what, seconds, status in r.timings:
            if 200 <= status < 300:
                per_minute[int((at - epoch) // 60)][what].append(seconds)
    print(f"  {'min':>3} | {'judgements':>10} {'p50':>6} {'p95':>6} | {'messages':>8} {'p50':>6} {'p95':>6} | "
          f"{'polls':>6} {'p50':>6} {'p95':>6} | {'pairs':>5} {'p50':>6} {'p95':>6}")
    print("        (judgement and message: POST round trips; poll: GET of a turn; pairs: message posted → "
          "both responses done)")
    for minute in sorted(per_minute):
        row = per_minute[minute]
        cells = []
        for what, width in (("judgement", 10), ("message", 8), ("poll", 6), ("pair", 5)):
            values = row.get(what, [])
            cells.append(f"{len(values):>{width}} {percentile(values, .5):>6.3f} {percentile(values, .95):>6.3f}")
        print(f"  {minute:>3} | " + " | ".join(cells))
    pair_waits = [w for r in summary.reports for w in r.pair_waits]
    print(f"\npair wait (message posted → both responses done): p50 {percentile(pair_waits, .5):.1f} s, "
          f"p95 {percentile(pair_waits, .95):.1f} s, max {max(pair_waits, default=float('nan')):.1f} s "
          f"over {len(pair_waits)} turns")
    print(f"throughput: {len(acknowledged) / (summary.elapsed or 1):.2f} judgements/s over {summary.elapsed:.0f} s")


if __name__ == "__main__":
    main()
