import os
import time
from pathlib import Path

import pytest
from django.conf import settings

from bench.processes import ROOT, CeleryWorker, ModelServer
from modelserving.local_models import build_tiny_llama, is_prepared

PASSWORD = "a-long-password-9"

# The worker's sampling settings: short timeouts and backoff so failure paths finish in seconds.
WORKER_SAMPLING = {
    "SAMPLING_CONNECT_TIMEOUT": "2",
    "SAMPLING_READ_TIMEOUT": "3",
    "SAMPLING_MAX_ATTEMPTS": "6",
    "SAMPLING_BACKOFF_BASE": "1",
    "SAMPLING_BACKOFF_MAX": "8",
    "SAMPLING_LEASE_SECONDS": "4",
    "SAMPLING_FLUSH_INTERVAL": "0.1",
}


@pytest.fixture(scope="session", autouse=True)
def _sqlite_flush_past_frozen_batches():
    """Transactional tests end with a flush. PostgreSQL's flush is a TRUNCATE, which row triggers do
    not see; SQLite's is a DELETE per table, which the frozen-batch triggers refuse. On SQLite the
    flush lifts them for its own transaction and puts them back (annotation/models/frozen.py)."""
    from django.db import connection

    from annotation.models.frozen import SQLITE_TRIGGERS

    if connection.vendor != "sqlite":
        yield
        return
    DatabaseOperations = type(connection.ops)
    original = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, **kwargs):
        statements = original(self, style, tables, **kwargs)
        if not statements:
            return statements
        return ([f"DROP TRIGGER IF EXISTS {name};" for name in SQLITE_TRIGGERS] + statements
                + list(SQLITE_TRIGGERS.values()))

    DatabaseOperations.sql_flush = sql_flush
    yield
    DatabaseOperations.sql_flush = original


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """A random-weight Llama with SmolLM2's tokenizer, built once and kept under var/."""
    tokenizer_source = settings.DEFAULT_MODEL_DIR if is_prepared(settings.DEFAULT_MODEL_DIR) else None
    return build_tiny_llama(ROOT / "var" / "test-models" / "tiny-llama", tokenizer_source=tokenizer_source)


@pytest.fixture(scope="session")
def model_servers(tiny_model_dir):
    """Two `transformers serve` processes on the tiny model, one per variant as in production."""
    servers = [ModelServer(tiny_model_dir).start() for _ in range(2)]
    try:
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def model_server(model_servers):
    return model_servers[0]


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """A real `celery worker` process on the test database and the configured broker."""
    from django.db import connection

    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings.test",
        TANDEM_TEST_DATABASE_NAME=str(connection.settings_dict["NAME"]),
        **WORKER_SAMPLING,
    )
    worker = CeleryWorker(env).start()
    yield worker
    worker.stop()


def wait_for(predicate, timeout: float = 60, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


def pair_finished(pair, timeout: float = 90, message: str | None = None) -> list:
    """Both generations of ``pair``, by position, once each is done or failed."""
    def check():
        generations = list(pair.generations.order_by("position"))
        return generations if all(g.is_finished for g in generations) else None

    return wait_for(check, timeout=timeout, message=message or f"both generations of pair {pair.pk} to finish")


@pytest.fixture
def variant_factory():
    from modelserving import services

    def make(name, server=None, *, base_url=None, model_name=None, **fields):
        fields.setdefault("temperature_min", 0.6)
        fields.setdefault("temperature_max", 0.9)
        fields.setdefault("max_new_tokens", 24)
        return services.variant_create(
            name=name,
            base_url=base_url or server.base_url,
            model_name=model_name or server.model_name,
            **fields,
        )

    return make


@pytest.fixture
def offline_variants(variant_factory, monkeypatch):
    """Two variants that are never called: pairs are requested but no sampling task is sent, and
    tests write the answers themselves (tests/helpers/preferences.py)."""
    monkeypatch.setattr("modelserving.tasks.generation_sample.delay_on_commit", lambda *args: None)
    return [variant_factory(name, base_url="http://127.0.0.1:9/v1", model_name="m") for name in ("cool", "warm")]


@pytest.fixture
def make_user(db):
    """make(username, role="annotator") → a user made through the accounts service."""
    from accounts.services import user_create

    def make(username, role="annotator"):
        return user_create(username=username, password=PASSWORD, role=role)

    return make
