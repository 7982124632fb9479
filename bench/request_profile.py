"""Where a judgement's CPU goes: bench/annotate_load.py --profile-requests N profiles N judgements
(next turn + submit through the API) in-process and prints their CPU time by layer and by function."""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _area(filename: str, name: str) -> str:
    """Which layer a profiled function belongs to, by its file (a C function by its name)."""
    if "psycopg2" in name or "/psycopg2/" in filename:
        return "psycopg2 (driver)"
    for marker, area in (("/django/db/", "Django ORM"), ("/django/template", "Django templates"),
                         ("/rest_framework/", "REST framework"), ("/django/", "Django (request, middleware, auth)")):
        if marker in filename:
            return area
    if filename.startswith(str(ROOT)) and "/.venv/" not in filename:
        return "Tandem's own code"
    return "Python and other libraries"


def profile_requests(token: str, turns: list, repeats: int, top: int = 15):
    """Where a judgement's server time goes: next turn + submit, ``repeats`` times (``turns``: the
    annotator's seeded (dialogue, turn) ids, 2 × repeats + 1 of them), through Django's
    request handler in-process (the full middleware stack, no HTTP server), first timed plainly
    (CPU time, the same measure as the load runs'), then under cProfile, grouped by layer."""
    import cProfile
    import pstats

    from rest_framework.test import APIClient

    api = APIClient(HTTP_HOST="127.0.0.1")
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    body = {"point": 2, "time_spent_ms": 5000, "safe_a": True, "safe_b": True}
    api.post(f"/api/turns/{turns[-1][1]}/judgement/", body, format="json")  # warm: the week's batch exists

    def judge():
        turn = api.get("/api/turns/next/").json()
        answer = api.post(f"/api/turns/{turn['id']}/judgement/", body, format="json")
        if answer.status_code != 201:
            raise RuntimeError(f"profile: submit {answer.status_code} {answer.content[:300]!r}")

    started = time.process_time()
    for _ in range(repeats):
        judge()
    plain_ms = 1000 * (time.process_time() - started) / repeats
    profiler = cProfile.Profile(time.process_time)  # CPU time, as the goal counts it (not waits on PostgreSQL)
    profiler.enable()
    for _ in range(repeats):
        judge()
    profiler.disable()
    stats = pstats.Stats(profiler)
    areas: dict[str, float] = {}
    for (filename, _, name), (_, _, own, _, _) in stats.stats.items():
        area = _area(filename, name)
        areas[area] = areas.get(area, 0.0) + own
    total = sum(areas.values()) or 1.0
    print(f"one judgement in-process (next turn + submit, API, {repeats} times): {plain_ms:.1f} ms CPU of this "
          f"process (the client's side of Django's test client included; PostgreSQL's own CPU not)")
    print("  where it goes (cProfile, own CPU time by layer): " + ", ".join(
        f"{area} {share / total:.0%}" for area, share in sorted(areas.items(), key=lambda item: -item[1])))
    print(f"  top {top} functions by own CPU time:")
    ranked = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:top]
    for (filename, line, name), (_, calls, own, _cumulative, _) in ranked:
        where = filename.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        print(f"    {1000 * own / repeats:6.2f} ms  {calls / repeats:6.1f} calls  {name}  ({where}:{line})")
