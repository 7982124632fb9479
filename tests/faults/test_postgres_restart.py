"""PostgreSQL restarted while judgements are being submitted: clients that retry get each judgement
stored exactly once, and the web tier recovers without a restart of its own.

The cluster is a private one (initdb in a temporary folder, a free port): the shared PostgreSQL
is never touched. gunicorn runs on it as in production (persistent connections with health checks).
"""

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg2
import pytest

from bench.processes import ROOT, PostgresCluster, WebServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CLIENTS, TURNS_EACH = 4, 10


@pytest.fixture
def cluster():
    root = Path(tempfile.mkdtemp(prefix="tandem-pg-", dir="/tmp"))
    os.chmod(root, 0o755)
    cluster = PostgresCluster(root).init().start()
    try:
        cluster.create_database("tandem_fault")
        yield cluster
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


def database_env(cluster) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "TANDEM_TEST_DATABASE_NAME"}
    return {**env, "DATABASE_URL": cluster.url("tandem_fault"), "DJANGO_SETTINGS_MODULE": "config.settings.test"}


class Judge(threading.Thread):
    """One client: judges its turns one after the other; a judgement that meets a connection error
    or a 5xx is sent again, the same, until it is acknowledged."""

    def __init__(self, base_url: str, token: str, turns: list, seed: int):
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=base_url, timeout=15, headers={"Authorization": f"Token {token}"})
        self.turns, self.rng = turns, random.Random(seed)
        self.acknowledged: dict[int, int] = {}  # turn id → the chosen generation
        self.errors = 0

    def run(self):
        for turn_id, a, b in self.turns:
            choice = self.rng.choice("AB")
            deadline = time.monotonic() + 120
            while True:
                try:
                    response = self.client.post(f"/api/turns/{turn_id}/judgement/",
                                                json={"choice": choice, "strength": "better"})
                    if response.status_code in (200, 201):
                        self.acknowledged[turn_id] = a if choice == "A" else b
                        break
                    assert response.status_code >= 500, (response.status_code, response.text[:300])
                except httpx.TransportError:
                    pass
                self.errors += 1
                assert time.monotonic() < deadline, f"turn {turn_id} never acknowledged"
                time.sleep(0.3)
            time.sleep(0.15)


def test_judgements_in_flight_across_a_postgres_restart_are_stored_exactly_once(cluster, private_redis):
    env = database_env(cluster)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, cwd=ROOT, check=True, timeout=180)
    seeded = json.loads(subprocess.run([sys.executable, str(Path(__file__).with_name("seed_judgeable.py")),
                                        str(CLIENTS), str(TURNS_EACH)], env=env, cwd=ROOT, check=True,
                                       capture_output=True, text=True, timeout=180).stdout)
    web = WebServer({**env, "CELERY_BROKER_URL": private_redis.url}, name="gunicorn-pg").start()
    try:
        pids = web.worker_pids()
        judges = [Judge(web.url, entry["token"], entry["turns"], seed) for seed, entry in enumerate(seeded)]
        for judge in judges:
            judge.start()
        time.sleep(1.0)
        cluster.stop(mode="fast")  # every connection of the web tier breaks, mid-request for some
        time.sleep(3)
        cluster.start()
        for judge in judges:
            judge.join(timeout=180)
        assert not any(judge.is_alive() for judge in judges)
        assert sum(judge.errors for judge in judges) > 0, "no submission met the restart"

        # The web tier came back by itself: same processes, answering.
        assert web.worker_pids() == pids
        for entry in seeded:
            answer = httpx.get(f"{web.url}/api/turns/next/", headers={"Authorization": f"Token {entry['token']}"})
            assert answer.status_code in (200, 204), answer.text
    finally:
        web.stop()

    acknowledged = {turn: chosen for judge in judges for turn, chosen in judge.acknowledged.items()}
    assert len(acknowledged) == CLIENTS * TURNS_EACH
    with psycopg2.connect(host="127.0.0.1", port=cluster.port, user="postgres", dbname="tandem_fault") as db:
        with db.cursor() as cursor:
            cursor.execute("SELECT id, chosen_generation_id, strength FROM annotation_turn "
                           "WHERE submitted_at IS NOT NULL")
            stored = {turn: (chosen, strength) for turn, chosen, strength in cursor.fetchall()}
    assert stored == {turn: (chosen, "better") for turn, chosen in acknowledged.items()}
