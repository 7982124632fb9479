"""Preference data for training tests: frozen batches whose preferred responses carry a learnable
property, built through the annotation services (the model's answers are written as the sampling
worker would write them)."""

import io
import json
import threading

import pytest

from accounts.services import user_create
from annotation.batches.services import batch_freeze
from annotation.models import Batch
from bench.scripted_server import ScriptedServer
from training.checkpoints import checkpoint_register
from training.models import Checkpoint

from ..helpers.preferences import judged_turns

PASSWORD = "a-long-password-9"


@pytest.fixture
def researcher():
    return user_create(username="res", password=PASSWORD, role="researcher")


@pytest.fixture
def preference_batch(offline_variants, settings):
    """make(helpfulness=n, safety=m) → a frozen batch of n + m judged turns, 25 % held out."""
    settings.HELD_OUT_SHARE = 0.25
    annotator = user_create(username="ann", password=PASSWORD, role="annotator")
    admin = user_create(username="adm", password=PASSWORD, role="admin")

    def make(*, helpfulness: int, safety: int = 0, seed: int = 0) -> Batch:
        judged_turns(annotator, n=helpfulness, focus="helpfulness", seed=seed)
        judged_turns(annotator, n=safety, focus="safety", seed=seed + 1, start=helpfulness)
        batch = Batch.objects.get(status=Batch.Status.OPEN)
        return batch_freeze(batch=batch, admin=admin, force=True)

    return make


@pytest.fixture
def tiny_base(tiny_model_dir):
    return checkpoint_register(name="tiny-llama", kind=Checkpoint.Kind.POLICY, path=tiny_model_dir)


# Settings under which the tiny model learns the property in a few seconds on CPU.
FAST = {"learning_rate": 3e-3, "epochs": 3, "max_length": 128, "batch_size": 8, "per_device_batch_size": 8}


@pytest.fixture
def undispatched(monkeypatch):
    """The runs' Celery messages, caught instead of sent (the args of each)."""
    sent = []
    monkeypatch.setattr("training.tasks.run_execute.apply_async", lambda args, **kwargs: sent.append(args))
    return sent


def served_pair(checkpoint, researcher, monkeypatch, *, name: str, message: str, start_timeout: float = 180) -> list:
    """``checkpoint`` served as the variant ``name`` by a local model server (the checkpoint page's
    action), made the only active variant, and a pair sampled from it by the worker: its two
    generations once finished. The local model servers are stopped afterwards."""
    from modelserving import services as modelserving
    from modelserving.local_servers import local_server_stop
    from modelserving.models import LocalServer, PolicyVariant
    from training.services import checkpoint_serve

    from ..conftest import pair_finished, wait_for

    try:
        variant = checkpoint_serve(checkpoint=checkpoint, researcher=researcher, name=name, max_new_tokens=8)
        wait_for(lambda: PolicyVariant.objects.get(pk=variant.pk).is_active, timeout=start_timeout,
                 message=f"{name}'s model server to answer")
        PolicyVariant.objects.exclude(pk=variant.pk).update(is_active=False)
        monkeypatch.undo()  # the batch was built without sampling; this pair goes to the worker
        pair = modelserving.pair_request(messages=[{"role": "user", "content": message}])
        return list(pair_finished(pair, timeout=180, message=f"a pair from {name}"))
    finally:
        for server in LocalServer.objects.filter(stopped_at__isnull=True):
            local_server_stop(server=server)


class AnsweringServer(ScriptedServer):
    """The scripted server, answering each request from its body: ``answer(body)`` returns a text
    to stream or an (HTTP status, message) tuple. Requests run on their own threads, so the body is
    handed to ``_next`` through a thread-local."""

    def __init__(self, answer, **kwargs):
        self.answer = answer
        self.local = threading.local()
        super().__init__([], chunk_delay=0, **kwargs)

    def _next(self):
        return self.answer(self.local.body)

    def _handler(self):
        base, server = super()._handler(), self

        class Handler(base):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.local.body = json.loads(raw or b"{}")
                self.rfile = io.BytesIO(raw)
                super().do_POST()

        return Handler


@pytest.fixture
def serve():
    servers = []

    def start(answer):
        servers.append(AnsweringServer(answer).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
