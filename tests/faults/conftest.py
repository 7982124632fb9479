"""The fault suite: real processes (gunicorn, Celery workers with beat, model servers, a private
Redis, a private PostgreSQL cluster) broken on purpose, then checked for lost or stuck work.

The shared PostgreSQL and Redis are never stopped: a case that needs a broker or a database to go
away starts its own on a free port. The workers here run the recovery sweeps every second and take
work for stuck after seconds (RECOVERY_*), so each case ends in seconds, not minutes.
"""

import contextlib
import os

import pytest

from bench.processes import CeleryWorker, RedisServer, WebServer

from ..conftest import WORKER_SAMPLING

OUTAGE_SECONDS = 30

# Quick sweeps. QUEUED_AFTER stays above SAMPLING_BACKOFF_MAX (8 s here): a generation waiting for
# its next try is not stuck.
RECOVERY_FAST = {"RECOVERY_EVERY": "1", "RECOVERY_QUEUED_AFTER": "10", "RECOVERY_LAPSED_AFTER": "1",
                 "RECOVERY_MAX_REQUEUES": "5"}


def stack_env(broker_url: str, **extra) -> dict:
    """The environment of the processes of a case: the test database, ``broker_url``, quick sampling
    settings and quick sweeps."""
    from django.db import connection

    return dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings.test",
                TANDEM_TEST_DATABASE_NAME=str(connection.settings_dict["NAME"]), CELERY_BROKER_URL=broker_url,
                **WORKER_SAMPLING, **RECOVERY_FAST, **extra)


@contextlib.contextmanager
def publishing_to(url: str):
    """Make this process's Celery app send its messages to ``url`` (a private broker) for a while."""
    from config.celery import app

    def reset():  # the pools are made again, for the URL in force
        app._pool = None
        app.amqp._producer_pool = None

    # Not broker_url: Celery reads it from CELERY_BROKER_URL in the environment first.
    previous = app.conf.broker_write_url if "broker_write_url" in app.conf else None
    reset()
    app.conf.broker_write_url = url
    try:
        yield
    finally:
        reset()
        app.conf.broker_write_url = previous


@pytest.fixture
def private_redis():
    redis = RedisServer().start()
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture
def processes():
    """start(process) → the process, started now and stopped at the end of the test."""
    started = []

    def start(process, **kwargs):
        started.append(process)
        return process.start(**kwargs)

    yield start
    for process in reversed(started):
        process.stop()


@pytest.fixture
def sampling_worker(private_redis, processes):
    """make(**env) → a sampling worker with beat (the recovery sweeps) on the private Redis."""

    def make(name="fault-worker", **extra):
        return processes(CeleryWorker(stack_env(private_redis.url, **extra), queues="sampling", beat=True,
                                      name=name))

    return make


@pytest.fixture
def web(private_redis, processes):
    """make(**env) → gunicorn on the private Redis: its broker, and its cache (throttles, /health)."""
    def make(**extra):
        cache = private_redis.url.rsplit("/", 1)[0] + "/1"
        return processes(WebServer(stack_env(private_redis.url, **{"CACHE_URL": cache, **extra})))

    return make


def acknowledged_are_stored_once(summary) -> None:
    """Every judgement the server acknowledged is in the database, once, as sent; and nothing was
    stored that was not acknowledged."""
    from annotation.models import Turn
    from annotation.workspace.selectors import sides

    acknowledged = {turn_id: payload for report in summary.reports for turn_id, payload in report.acknowledged.items()}
    assert acknowledged, "no judgement was acknowledged"
    judged = {turn.pk: turn for turn in Turn.objects.filter(submitted_at__isnull=False)
              .select_related("pair").prefetch_related("pair__generations")}
    assert set(judged) == set(acknowledged)
    for turn_id, payload in acknowledged.items():
        turn = judged[turn_id]
        if payload.get("both_unusable"):
            assert turn.both_unusable and turn.chosen_generation_id is None
            continue
        a, b = sides(turn)
        assert turn.chosen_generation_id == (a if payload["choice"] == "A" else b).pk
        assert turn.strength == payload["strength"] and turn.batch_id is not None
