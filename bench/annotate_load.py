"""Annotators under load: N simulated annotators judging over HTTP against gunicorn and PostgreSQL.

The benchmark seeds each annotator's dialogues through the services, both responses sampled by the
sampling task from a scripted server that answers at once (so no model time is counted), starts
gunicorn, and lets N threads work like annotators:
load the next turn (GET /api/turns/next/), judge it (POST /api/turns/<id>/judgement/), and now
and then send the same judgement again, as a double click or a network retry would. With
--browser-like they use the workspace's own htmx endpoints instead, as the page does: the dialogue
page, the turn partial (polled once: the pair is already done) and the judgement form's post.

It prints judgements per second, p50/p95/p99 of loading the next turn and of submitting, the
server's CPU time per judgement (user + system of gunicorn's master and workers over the run,
divided by the judgements stored; the clients are not counted), the bytes of each response, and
errors, and what the whole machine spent per judgement: gunicorn, the clients (this process),
PostgreSQL and Redis. Then it checks that every acknowledged judgement is in the database exactly
once, as acknowledged. An unmeasured warm-up run comes first. Before the runs it counts the SQL
queries of one next-turn and one submit (and of the turn partial and the form post) in-process, on
the same database.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tandem_bench .venv/bin/python bench/annotate_load.py
    .venv/bin/python bench/annotate_load.py --annotators 1 8 32 --judgements 640
    .venv/bin/python bench/annotate_load.py --worker-class sync --workers 4 --browser-like
    .venv/bin/python bench/annotate_load.py --annotators 8 --profile-requests 100   # where the time goes
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.statistics import percentile  # noqa: E402  (Django-free)


def cpu_seconds(*, group: int | None = None, name: str | None = None) -> float:
    """User + system CPU, from /proc, of every process in a process group (gunicorn's master and its
    workers) or of that name (PostgreSQL's postmaster and backends), with the children they reaped."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm, rest = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue  # exited meanwhile
        fields = rest.split()
        if (group is not None and int(fields[2]) == group) or (name is not None and comm.endswith("(" + name)):
            ticks += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(group: int) -> float:
    return cpu_seconds(group=group)


ANSWER = "Response: " + "lorem ipsum " * 40  # what both seeded variants answer, every time


class Seeder:
    """Annotators with judgeable turns, made through the services: an annotator's account, its
    dialogues and messages (dialogue_start, turn_post), and both responses sampled by the sampling
    task itself, run in this process (Celery eager) against a scripted OpenAI-compatible server on
    loopback that answers at once, so no model time is counted."""

    def __init__(self):
        from bench.scripted_server import ScriptedServer
        from config.celery import app
        from modelserving.models import PolicyVariant

        self.server = ScriptedServer([], default=ANSWER, chunk_delay=0).start()
        app.conf.task_always_eager = True  # generation_sample runs on commit, here, as a worker would run it
        others = PolicyVariant.objects.filter(is_active=True).exclude(name__in=("bench-a", "bench-b"))
        if others.exists():
            sys.exit("annotate_load wants a database of its own (DATABASE_URL): active variants "
                     + ", ".join(others.values_list("name", flat=True)) + " would be sampled.")
        for name, temperature in (("bench-a", 0.7), ("bench-b", 1.0)):
            self._variant(name, temperature)

    def _variant(self, name: str, temperature: float) -> None:
        from modelserving.models import PolicyVariant
        from modelserving.services import variant_create, variant_update

        fields = {"base_url": self.server.base_url, "model_name": self.server.MODEL, "is_active": True,
                  "temperature_min": temperature, "temperature_max": temperature, "max_new_tokens": 128}
        variant = PolicyVariant.objects.filter(name=name).first()
        if variant is None:
            variant_create(name=name, **fields)
        else:
            variant_update(variant=variant, **fields)

    def stop(self) -> None:
        self.server.stop()

    def seed(self, n_annotators: int, turns_each: int, run: str):
        """Users with tokens, and for each one ``turns_each`` judgeable turns (pairs already done);
        returns (token, session cookie, [(dialogue id, turn id), …]) per annotator."""
        from django.test import Client
        from rest_framework.authtoken.models import Token

        from accounts.services import user_create
        from annotation.workspace.services import dialogue_start, turn_post

        annotators = []
        for index in range(n_annotators):
            user = user_create(username=f"bench-{run}-{index}", password="bench-password-42", role="annotator")
            token = Token.objects.create(user=user).key
            browser = Client()
            browser.force_login(user)  # a session row, as a login would make
            turns = []
            for number in range(turns_each):
                dialogue = dialogue_start(annotator=user, focus="safety" if number % 3 == 0 else "helpfulness")
                turn = turn_post(dialogue=dialogue, annotator=user,
                                 user_message=f"Prompt {number} of annotator {index}")
                turns.append((dialogue.pk, turn.pk))
            annotators.append((token, browser.cookies["sessionid"].value, turns))
        return annotators


def analyze() -> None:
    """Fresh planner statistics after seeding, as autovacuum gives a server that has been up a while
    (seconds after thousands of inserts, the planner still thinks the tables are empty)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def count_queries(seeder: Seeder, run: str) -> dict:
    """SQL queries of one request of each kind on the judgement path, counted in-process (the same
    code and database as the server's)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    (token, session, turns), = seeder.seed(1, 4, f"{run}-queries")
    api, browser = APIClient(HTTP_HOST="127.0.0.1"), Client(HTTP_HOST="127.0.0.1", HTTP_HX_REQUEST="true")
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    browser.cookies["sessionid"] = session
    body = {"point": 2, "time_spent_ms": 5000, "safe_a": True, "safe_b": True}
    form = {"point": "2", "time_spent_ms": "5000", "safe_a": "safe", "safe_b": "safe"}
    # Warm: the week's batch exists and the caches are filled, as on a server that has been up a while.
    api.post(f"/api/turns/{turns[3][1]}/judgement/", body, format="json")
    browser.get(f"/annotate/turns/{turns[3][1]}/")
    calls = {
        "next turn": lambda: api.get("/api/turns/next/"),
        "submit": lambda: api.post(f"/api/turns/{turns[0][1]}/judgement/", body, format="json"),
        "turn partial": lambda: browser.get(f"/annotate/turns/{turns[1][1]}/"),
        "form post": lambda: browser.post(f"/annotate/turns/{turns[1][1]}/judgement/", form),
    }
    counts = {}
    for name, call in calls.items():
        with CaptureQueriesContext(connection) as queries:
            response = call()
        if response.status_code >= 300:
            raise RuntimeError(f"{name}: {response.status_code} {response.content[:300]!r}")
        counts[name] = len(queries.captured_queries)
    return counts


class Annotator(threading.Thread):
    def __init__(self, base_url: str, seeded: tuple, rng: random.Random, retry_share: float, browser_like: bool):
        super().__init__(daemon=True)
        self.base_url, self.rng, self.retry_share, self.browser_like = base_url, rng, retry_share, browser_like
        self.token, self.session, self.turns = seeded
        self.next_ms, self.submit_ms, self.errors = [], [], []
        self.next_bytes, self.submit_bytes = [], []
        self.acknowledged: dict[int, dict] = {}

    def run(self):
        if self.browser_like:
            return self.run_browser_like()
        import httpx

        headers = {"Authorization": f"Token {self.token}"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=60) as client:
            while True:
                started = time.perf_counter()
                response = client.get("/api/turns/next/")
                self.next_ms.append((time.perf_counter() - started) * 1000)
                self.next_bytes.append(len(response.content))
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
                    self.submit_bytes.append(len(answer.content))
                    expected = 201 if attempt == 0 else 200
                    if answer.status_code != expected:
                        self.errors.append(f"submit {answer.status_code}: {answer.text[:200]}")
                        return
                    self.acknowledged[turn["id"]] = answer.json()["judgement"]

    def run_browser_like(self):
        """The workspace's requests: the dialogue page, its turn partial, the judgement form (htmx)."""
        import httpx

        with httpx.Client(base_url=self.base_url, timeout=60, cookies={"sessionid": self.session}) as client:
            for dialogue_id, turn_id in self.turns:
                started = time.perf_counter()
                page = client.get(f"/annotate/dialogues/{dialogue_id}/")
                csrf = re.search(r'"X-CSRFToken": "([^"]+)"', page.text)
                headers = {"HX-Request": "true", "X-CSRFToken": csrf.group(1) if csrf else "",
                           "Referer": self.base_url + f"/annotate/dialogues/{dialogue_id}/"}
                partial = client.get(f"/annotate/turns/{turn_id}/", headers=headers)
                self.next_ms.append((time.perf_counter() - started) * 1000)
                self.next_bytes.append(len(page.content) + len(partial.content))
                if page.status_code != 200 or partial.status_code != 200 or not csrf:
                    self.errors.append(f"page {page.status_code} / partial {partial.status_code}")
                    return
                point = self.rng.randint(1, 8)
                labels = self.safety_labels(point)
                form = {"point": str(point), "time_spent_ms": str(self.rng.randint(2000, 30000)),
                        **{key: "safe" if value else "unsafe" for key, value in labels.items()}}
                for _ in range(2 if self.rng.random() < self.retry_share else 1):
                    started = time.perf_counter()
                    answer = client.post(f"/annotate/turns/{turn_id}/judgement/", data=form, headers=headers)
                    self.submit_ms.append((time.perf_counter() - started) * 1000)
                    self.submit_bytes.append(len(answer.content))
                    if answer.status_code != 200:  # a refusal re-renders the form; the final check sees it
                        self.errors.append(f"submit {answer.status_code}: {answer.text[:200]}")
                        return
                self.acknowledged[turn_id] = {"point": point}

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
    # The defaults are config/gunicorn.py's (the Dockerfile's): gthread, one process per core, 4 threads.
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="gunicorn worker processes")
    parser.add_argument("--worker-class", default="gthread", choices=["sync", "gthread"])
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (gthread)")
    parser.add_argument("--browser-like", action="store_true",
                        help="the workspace's htmx endpoints (page, turn partial, form post) instead of the API")
    parser.add_argument("--retry-share", type=float, default=0.1, help="share of judgements sent twice")
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--profile-requests", type=int, default=0, metavar="REPEATS",
                        help="also profile REPEATS judgements in-process and show where the time goes")
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tandem_bench")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # One simulated annotator judges faster than any person (2,600 requests a minute at N = 1); the
    # per-user throttle would stop the run. It still runs on every request, with a higher rate.
    os.environ.setdefault("THROTTLE_USER", "100000/min")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from annotation.models import Turn

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        sys.exit("This benchmark runs on PostgreSQL: set DATABASE_URL.")
    call_command("migrate", verbosity=0)
    run_id = time.strftime("%H%M%S")
    seeder = Seeder()
    queries = count_queries(seeder, run_id)
    if args.profile_requests:
        from bench.request_profile import profile_requests

        (token, _, turns), = seeder.seed(1, 2 * args.profile_requests + 1, f"{run_id}-profile")
        analyze()
        profile_requests(token, turns, args.profile_requests)
    gunicorn = ["--workers", str(args.workers), "--worker-class", args.worker_class, "--threads", str(args.threads)]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "config.wsgi", "--bind", f"127.0.0.1:{args.port}",
         *gunicorn, "--log-level", "warning"],
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
        path = "htmx workspace (page + turn partial, form post)" if args.browser_like else "JSON API"
        print(f"annotate load: gunicorn {' '.join(gunicorn)} on {os.cpu_count()} cores, PostgreSQL, {path}, "
              f"{args.judgements} judgements per run, {args.retry_share:.0%} sent twice")
        print("SQL queries per request: " + ", ".join(f"{name} {n}" for name, n in queries.items()))
        print(f"{'N':>3} {'judged':>7} {'per s':>7} | {'next p50':>8} {'p95':>6} {'p99':>6} | "
              f"{'submit p50':>10} {'p95':>6} {'p99':>6} | {'CPU ms/j':>8} | {'bytes next':>10} {'submit':>6} | "
              f"{'errors':>6} | exactly once")
        # Warm up first, unmeasured: every worker thread imports, connects and fills its caches on
        # its first requests (the first measured run paid for that: 40 % more CPU per judgement).
        warm = [Annotator(base_url, one, random.Random(i), args.retry_share, args.browser_like)
                for i, one in enumerate(seeder.seed(2 * args.workers * args.threads, 4, f"{run_id}-warm"))]
        for worker in warm:
            worker.start()
        for worker in warm:
            worker.join()
        for n in args.annotators:
            turns_each = max(1, args.judgements // n)
            seeded = seeder.seed(n, turns_each, f"{run_id}-{n}")
            analyze()
            rng = random.Random(n)
            workers = [Annotator(base_url, one, random.Random(rng.random()), args.retry_share, args.browser_like)
                       for one in seeded]
            cpu_before = server_cpu_seconds(server.pid)
            others_before = time.process_time(), cpu_seconds(name="postgres"), cpu_seconds(name="redis-server")
            started = time.perf_counter()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            elapsed = time.perf_counter() - started
            cpu = server_cpu_seconds(server.pid) - cpu_before
            clients_cpu, postgres_cpu, redis_cpu = (after - before for after, before in zip(
                (time.process_time(), cpu_seconds(name="postgres"), cpu_seconds(name="redis-server")), others_before))
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
            next_bytes = [x for w in workers for x in w.next_bytes]
            submit_bytes = [x for w in workers for x in w.submit_bytes]
            cpu_ms = 1000 * cpu / max(1, len(stored_ids))
            print(f"{n:>3} {len(acknowledged):>7} {len(acknowledged) / elapsed:>7.1f} | "
                  f"{percentile(next_ms, .5):>8.1f} {percentile(next_ms, .95):>6.1f} "
                  f"{percentile(next_ms, .99):>6.1f} | "
                  f"{percentile(submit_ms, .5):>10.1f} {percentile(submit_ms, .95):>6.1f} "
                  f"{percentile(submit_ms, .99):>6.1f} | {cpu_ms:>8.1f} | "
                  f"{sum(next_bytes) / max(1, len(next_bytes)):>10.0f} "
                  f"{sum(submit_bytes) / max(1, len(submit_bytes)):>6.0f} | "
                  f"{len(errors):>6} | "
                  f"{'yes' if exactly_once else 'NO'} ({len(stored_ids)} stored, {len(acknowledged)} acknowledged)")
            per = 1000 / max(1, len(stored_ids))
            print(f"    the machine's CPU per judgement: gunicorn {cpu_ms:.1f} ms, clients {clients_cpu * per:.1f}, "
                  f"PostgreSQL {postgres_cpu * per:.1f}, Redis {redis_cpu * per:.1f}; total "
                  f"{(cpu + clients_cpu + postgres_cpu + redis_cpu) * per:.1f} ms of {os.cpu_count()} cores' "
                  f"{elapsed * (os.cpu_count() or 1) * per:.1f}")
            for error in errors[:5]:
                print("   error:", error)
        print("latencies in ms, measured by the clients; figures include the retried submissions (200s); CPU ms/j: "
              "gunicorn's user + system CPU over the run per judgement stored (next turn + submit).")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        seeder.stop()


def _matches(turn, judgement: dict) -> bool:
    from annotation.workspace.scale import to_point
    from annotation.workspace.selectors import sides

    a, _ = sides(turn)
    choice = "A" if turn.chosen_generation_id == a.id else "B"
    return turn.is_judged and to_point(choice, turn.strength) == judgement["point"]


if __name__ == "__main__":
    main()
