"""What the platform adds to sampling a pair.

For each of N pairs on the same model server: the time from `pair_request` to both generations
done through the platform (database, broker, Celery worker, streaming client, partial-text
writes), and the time of the same two requests (same body, seeds included) sent directly and
concurrently to the server. Prints the median and p95 of their ratio and of the absolute
overhead in milliseconds.

    .venv/bin/python bench/sampling_overhead.py                 # embedded default: SQLite + filesystem broker
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tandem_sampling \
    CELERY_BROKER_URL=redis://127.0.0.1:6379/3 .venv/bin/python bench/sampling_overhead.py

The bench keeps its own state under var/bench/ (or in the database you name: a throwaway one; it
clears generations, pairs and variants, and refuses a database that holds annotators' turns) and starts its own
model server and worker. Each pair runs through the platform first; its two exact request bodies are then sent directly.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core.statistics import percentile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Prompts that draw long answers, so both runs of a pair usually stop at max_tokens and generate
# the same number of tokens (the last line of the report says how often they did).
PROMPTS = [
    "Write a detailed essay about the history of the printing press.",
    "Explain in detail how photosynthesis works, step by step.",
    "Write a long story about a lighthouse keeper and a storm.",
    "Describe, at length, how to plan a two-week trip through Italy.",
    "Explain in depth how a compiler turns source code into machine code.",
    "Write a long letter to a friend about learning to play the piano.",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--model", choices=["default", "tiny"], default="default",
                        help="SmolLM2 (prepared by `manage.py prepare_default_model`) or the tiny random Llama.")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the model server")
    args = parser.parse_args()

    os.environ.setdefault("TANDEM_VAR_DIR", str(ROOT / "var" / "bench"))
    os.environ.setdefault("DEFAULT_MODEL_DIR", str(ROOT / "var" / "models" / "smollm2-135m-instruct"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    Path(os.environ["TANDEM_VAR_DIR"]).mkdir(parents=True, exist_ok=True)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone

    from bench.processes import CeleryWorker, ModelServer
    from modelserving import client, services
    from modelserving.local_models import build_tiny_llama, is_prepared
    from modelserving.models import Generation, Pair, PolicyVariant

    call_command("migrate", verbosity=0)
    from annotation.models import Turn

    if Turn.objects.exists():  # it clears generations, pairs and variants below
        sys.exit(f"This database holds {Turn.objects.count()} annotators' turns; the bench clears generations, "
                 "pairs and variants. Point DATABASE_URL at a throwaway database.")
    if args.model == "default":
        if not is_prepared(settings.DEFAULT_MODEL_DIR):
            call_command("prepare_default_model")
        model_dir = settings.DEFAULT_MODEL_DIR
    else:
        model_dir = build_tiny_llama(ROOT / "var" / "test-models" / "tiny-llama")

    server = ModelServer(model_dir, threads=args.threads).start()
    worker = CeleryWorker(dict(os.environ), concurrency=2)
    worker.log_path = ROOT / "var" / "bench" / "worker.log"
    try:
        server.wait_ready()
        worker.start()
        Generation.objects.all().delete()
        Pair.objects.all().delete()
        PolicyVariant.objects.all().delete()
        for name, (low, high) in {"cool": (0.5, 0.8), "warm": (1.0, 1.3)}.items():
            services.variant_create(name=name, base_url=server.base_url, model_name=server.model_name,
                                    temperature_min=low, temperature_max=high, max_new_tokens=args.max_tokens)
        endpoint = client.Endpoint(base_url=server.base_url, read_timeout=120)

        dispatch_ms, stream_ms, first_token_ms, around_ms = [], [], [], []

        def through_platform(messages):
            requested_at = timezone.now()
            pair = services.pair_request(messages=messages)
            # Poll gently (the polling itself would compete for CPU with the model server); the
            # time is taken from the rows' own finished_at, not from when the poll noticed.
            while set(Generation.objects.filter(pair=pair).values_list("status", flat=True)) - {"done", "failed"}:
                time.sleep(0.05)
            generations = list(pair.generations.order_by("position"))
            failed = [g.error for g in generations if g.status != "done"]
            if failed:
                raise SystemExit(f"a generation failed: {failed}")
            elapsed = (max(g.finished_at for g in generations) - requested_at).total_seconds()
            # Where the time went: request → both tasks running; the longer of the two streams.
            dispatch_ms.append(max((g.started_at - requested_at).total_seconds() * 1000 for g in generations))
            stream_ms.append(max(g.latency_ms for g in generations))
            first_token_ms.append(max(g.first_token_ms or 0 for g in generations))
            # In the task but outside the stream: the claim before it, the final write after it.
            around_ms.append(max((g.finished_at - g.started_at).total_seconds() * 1000 - g.latency_ms
                                 for g in generations))
            return elapsed, [g.request_body for g in generations], [g.completion_tokens for g in generations]

        def direct(bodies):
            """The same two requests, streamed concurrently with the same client code, no platform."""
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=2) as pool:
                completions = list(pool.map(lambda body: client.stream_chat(endpoint, body), bodies))
            return time.perf_counter() - started, [c.completion_tokens for c in completions]

        # Warm-up: first requests pay for lazy initialisation in the server and the worker.
        for prompt in PROMPTS[:2]:
            _, bodies, _ = through_platform([{"role": "user", "content": prompt}])
            direct(bodies)

        platform_s, direct_s, token_match = [], [], []
        for index in range(args.pairs):
            messages = [{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}]
            elapsed, bodies, tokens = through_platform(messages)
            platform_s.append(elapsed)
            seconds, direct_tokens = direct(bodies)
            direct_s.append(seconds)
            token_match.append(tokens == direct_tokens)
    finally:
        worker.stop()
        server.stop()

    ratios = [p / d for p, d in zip(platform_s, direct_s)]
    overhead_ms = [(p - d) * 1000 for p, d in zip(platform_s, direct_s)]
    broker = settings.CELERY_BROKER_URL.split("://")[0]
    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(f"sampling overhead: {args.pairs} pairs, model={args.model} ({Path(model_dir).name}), "
          f"max_tokens={args.max_tokens}, database={database}, broker={broker}")
    print(f"{'':28}{'median':>10}{'p95':>10}")
    print(f"{'platform, pair done (ms)':28}{statistics.median(platform_s) * 1000:>10.0f}"
          f"{percentile(platform_s, 0.95) * 1000:>10.0f}")
    print(f"{'direct, both done (ms)':28}{statistics.median(direct_s) * 1000:>10.0f}"
          f"{percentile(direct_s, 0.95) * 1000:>10.0f}")
    print(f"{'ratio platform/direct':28}{statistics.median(ratios):>10.3f}{percentile(ratios, 0.95):>10.3f}")
    print(f"{'overhead (ms)':28}{statistics.median(overhead_ms):>10.0f}{percentile(overhead_ms, 0.95):>10.0f}")
    print(f"{'  request → both running (ms)':28}{statistics.median(dispatch_ms[2:]):>10.0f}"
          f"{percentile(dispatch_ms[2:], 0.95):>10.0f}")
    print(f"{'  longer stream, worker (ms)':28}{statistics.median(stream_ms[2:]):>10.0f}"
          f"{percentile(stream_ms[2:], 0.95):>10.0f}")
    print(f"{'  first token, worker (ms)':28}{statistics.median(first_token_ms[2:]):>10.0f}"
          f"{percentile(first_token_ms[2:], 0.95):>10.0f}")
    print(f"{'  claim + final write (ms)':28}{statistics.median(around_ms[2:]):>10.0f}"
          f"{percentile(around_ms[2:], 0.95):>10.0f}")
    print("(times are the rows' own timestamps: request → finished_at, not when the bench's poll noticed)")
    print(f"pairs whose completion token counts matched between the two runs: {sum(token_match)}/{len(token_match)}")


if __name__ == "__main__":
    main()
