"""Sampling throughput: N annotators' pairs through Tandem against the same requests sent straight
to the model servers.

Two model servers serve SmolLM2-135M-Instruct, one per variant as in production: vLLM's CPU build
(`--engine vllm`, the default where it runs) or `transformers serve` (`--engine transformers`, the
baseline). For each N of `--annotators`:

1. Through Tandem: N threads, each an annotator asking for pairs one after the other
   (`services.pair_request`, as a dialogue's next message does) and waiting until both answers are
   done, i.e. judgeable; a Celery worker (a pool of 2·N threads) samples them through the sampler's
   client, writing partial text as it streams. Pair wait: request → the later `finished_at`.
2. Straight to the servers: the exact request bodies of those pairs (seeds included) replayed, N
   pairs at a time, each pair's two requests at once to their servers with the same streaming
   client: what `vllm bench serve` would measure with Tandem's requests as its data set.

It prints completion tokens per second on both sides and Tandem's ratio, and the pair wait
(p50/p95) on both. A warm-up pair precedes each side.

    .venv/bin/python bench/sampling_throughput.py                                   # vLLM, N = 8 and 32
    .venv/bin/python bench/sampling_throughput.py --annotators 8 32 --pairs-per-annotator 2 1
    .venv/bin/python bench/sampling_throughput.py --engine transformers --annotators 8 \\
        --pairs-per-annotator 2 --tandem-only                                      # the baseline's pair wait
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tandem_throughput CELERY_BROKER_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python bench/sampling_throughput.py

On the embedded default (SQLite and the filesystem broker under var/bench-throughput/) unless
DATABASE_URL and CELERY_BROKER_URL name others (throwaway ones: it clears pairs and variants).
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sampling_overhead import PROMPTS  # noqa: E402  (prompts that draw long answers)
from core.statistics import percentile  # noqa: E402  (Django-free)


def run_annotators(n: int, pairs_each: int, ask) -> tuple[float, list]:
    """n threads, each calling ``ask(index)`` pairs_each times in turn; returns (seconds, results)."""
    results, lock = [], threading.Lock()

    def annotator(number: int) -> None:
        for turn in range(pairs_each):
            result = ask(number * pairs_each + turn)
            with lock:
                results.append(result)

    started = time.perf_counter()
    threads = [threading.Thread(target=annotator, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, results


def replay(n: int, pairs: list[list[tuple]], stream) -> tuple[float, list]:
    """The pairs' request bodies, n pairs at a time; each pair's two requests at once.
    ``pairs``: [(endpoint, body), (endpoint, body)] per pair. Returns (seconds, [(wait s, tokens)])."""
    todo: queue.Queue = queue.Queue()
    for pair in pairs:
        todo.put(pair)
    results, lock = [], threading.Lock()

    def one_pair(pair):
        started = time.perf_counter()
        completions = [None, None]

        def side(i):
            completions[i] = stream(*pair[i])

        sides = [threading.Thread(target=side, args=(i,)) for i in (0, 1)]
        for thread in sides:
            thread.start()
        for thread in sides:
            thread.join()
        return time.perf_counter() - started, sum(c.completion_tokens or 0 for c in completions)

    def annotator():
        while True:
            try:
                pair = todo.get_nowait()
            except queue.Empty:
                return
            result = one_pair(pair)
            with lock:
                results.append(result)

    started = time.perf_counter()
    threads = [threading.Thread(target=annotator) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["vllm", "transformers"], default="vllm")
    parser.add_argument("--annotators", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--pairs-per-annotator", type=int, nargs="+", default=[4],
                        help="pairs each annotator asks for, one after the other: one value, or one per N")
    parser.add_argument("--max-tokens", type=int, default=128, help="answer length (max_new_tokens of both variants)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each model server")
    parser.add_argument("--tandem-only", action="store_true", help="no direct replay (a baseline's pair wait alone)")
    args = parser.parse_args(argv)
    if len(args.pairs_per_annotator) not in (1, len(args.annotators)):
        parser.error("--pairs-per-annotator takes one value, or one per value of --annotators")
    pairs_each = dict(zip(args.annotators, args.pairs_per_annotator * len(args.annotators)
                          if len(args.pairs_per_annotator) == 1 else args.pairs_per_annotator, strict=True))

    os.environ.setdefault("TANDEM_VAR_DIR", str(ROOT / "var" / "bench-throughput"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    Path(os.environ["TANDEM_VAR_DIR"]).mkdir(parents=True, exist_ok=True)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from annotation.models import Turn
    from bench.processes import CeleryWorker, ModelServer
    from modelserving import client, services
    from modelserving.local_models import is_prepared
    from modelserving.models import Generation, Pair, PolicyVariant

    call_command("migrate", verbosity=0)
    if Turn.objects.exists():
        sys.exit("This database holds annotators' turns; the bench clears pairs and variants. Point DATABASE_URL at "
                 "a throwaway database.")
    if not is_prepared(settings.DEFAULT_MODEL_DIR):
        call_command("prepare_default_model")
    servers = [ModelServer(settings.DEFAULT_MODEL_DIR, threads=args.threads, engine=args.engine) for _ in range(2)]
    worker = CeleryWorker(dict(os.environ), concurrency=2 * max(args.annotators), queues="sampling", pool="threads",
                          name="throughput-worker")
    rows = []
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready(timeout=900)
        worker.start()
        Generation.objects.all().delete()
        Pair.objects.all().delete()
        PolicyVariant.objects.all().delete()
        for server, (name, low, high) in zip(servers, [("cool", 0.5, 0.8), ("warm", 1.0, 1.3)], strict=True):
            services.variant_create(name=name, base_url=server.base_url, model_name=server.model_name,
                                    temperature_min=low, temperature_max=high, max_new_tokens=args.max_tokens)
        endpoints = {server.base_url: client.Endpoint(base_url=server.base_url, read_timeout=600)
                     for server in servers}

        def through_tandem(index: int):
            pair = services.pair_request(messages=[{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}])
            while set(Generation.objects.filter(pair=pair).values_list("status", flat=True)) - {"done", "failed"}:
                time.sleep(0.25)  # the wait is read from finished_at; polling only ends the thread
            generations = list(pair.generations.select_related("variant").order_by("position"))
            failed = [g.error for g in generations if g.status != "done"]
            if failed:
                raise SystemExit(f"a generation failed: {failed}")
            wait = (max(g.finished_at for g in generations) - pair.created_at).total_seconds()
            return wait, sum(g.completion_tokens or 0 for g in generations), [
                (endpoints[g.variant.base_url], g.request_body) for g in generations]

        def stream(endpoint, body):
            return client.stream_chat(endpoint, body)

        through_tandem(0)  # warm-up: the servers' and the worker's first requests
        for n in args.annotators:
            tandem_s, tandem = run_annotators(n, pairs_each[n], through_tandem)
            direct_s, direct = (None, []) if args.tandem_only else replay(
                n, [bodies for _, _, bodies in tandem], stream)
            rows.append((n, len(tandem), tandem_s, tandem, direct_s, direct))
    finally:
        worker.stop()
        for server in servers:
            server.stop()

    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    broker = settings.CELERY_BROKER_URL.split("://")[0]
    print(f"sampling throughput: two {args.engine} servers ({args.threads} thread(s) each) serving "
          f"{Path(settings.DEFAULT_MODEL_DIR).name}, answers ≤ {args.max_tokens} tokens, {database} + {broker}, "
          f"{os.cpu_count()} cores")
    print(f"{'N':>3} {'pairs':>5} | {'Tandem tok/s':>12} {'wait p50':>8} {'p95':>6} | {'direct tok/s':>12} "
          f"{'wait p50':>8} {'p95':>6} | {'ratio':>5}")
    for n, count, tandem_s, tandem, direct_s, direct in rows:
        tandem_rate = sum(tokens for _, tokens, _ in tandem) / tandem_s
        waits = [w for w, _, _ in tandem]
        p50, p95 = percentile(waits, .5), percentile(waits, .95)
        line = f"{n:>3} {count:>5} | {tandem_rate:>12.1f} {p50:>8.1f} {p95:>6.1f} | "
        if direct_s is None:
            print(line + f"{'-':>12} {'-':>8} {'-':>6} | {'-':>5}")
            continue
        direct_rate = sum(tokens for _, tokens in direct) / direct_s
        direct_waits = [w for w, _ in direct]
        p50, p95 = percentile(direct_waits, .5), percentile(direct_waits, .95)
        print(line + f"{direct_rate:>12.1f} {p50:>8.1f} {p95:>6.1f} | {tandem_rate / direct_rate:>5.2f}")
    print("tok/s: completion tokens of all pairs over the run's wall-clock time; wait: seconds from asking for a "
          "pair to both answers done; ratio: Tandem's tok/s over the direct replay's.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
