"""A model server that answers 500, hangs, resets the connection in the middle of a stream or streams
garbage: every generation ends done or failed with a reason, none stays queued or running.

The servers are scripted (bench/scripted_server.py: the OpenAI streaming protocol, broken
on cue); the worker is the real one, with the suite's quick sampling settings (3 s read timeout,
6 tries, backoff 1–8 s)."""

import pytest

from bench.scripted_server import Garbage, Reset, ScriptedServer, Stall
from modelserving import services
from modelserving.models import Generation

from ..conftest import WORKER_SAMPLING, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

MAX_ATTEMPTS = int(WORKER_SAMPLING["SAMPLING_MAX_ATTEMPTS"])
PROMPT = [{"role": "user", "content": "Say something."}]

# name → (script of the server: one reply per request, then the default for every later one),
# and what the generation must end as.
CASES = {
    "500-then-answer": (dict(replies=[(500, "out of memory"), (503, "loading")], default="Recovered fine."),
                        ("done", 3, "Recovered fine.")),
    "always-500": (dict(replies=[], default=None), ("failed", MAX_ATTEMPTS, "HTTP 500")),
    "hangs-mid-stream": (dict(replies=[Stall(seconds=20)], default="After the hang."),
                         ("done", 2, "After the hang.")),
    "resets-mid-stream": (dict(replies=[Reset()], default="After the reset."), ("done", 2, "After the reset.")),
    "always-resets": (dict(replies=[Reset()] * 50, default="never"), ("failed", MAX_ATTEMPTS, "Could not reach")),
    "garbage": (dict(replies=[Garbage()], default="never"), ("failed", 1, "not an OpenAI chat stream")),
}


def test_each_broken_server_leaves_its_generation_done_or_failed_with_the_reason(celery_worker, variant_factory):
    servers, generations = {}, {}
    try:
        for name, (script, _) in CASES.items():
            default = script["default"] if script["default"] is not None else (500, "internal error")
            server = servers[name] = ScriptedServer(list(script["replies"]), default=default).start()
            variant = variant_factory(name, server, temperature_min=0.5, temperature_max=0.5)
            generations[name] = services.generation_request(variant=variant, messages=PROMPT)
        wait_for(lambda: all(g.is_finished for g in Generation.objects.filter(
            pk__in=[g.pk for g in generations.values()])), timeout=240, interval=0.5,
            message="every generation to end")
    finally:
        for server in servers.values():
            server.stop()
    for name, (_, (status, attempts, words)) in CASES.items():
        generation = Generation.objects.get(pk=generations[name].pk)
        assert generation.status == status, (name, generation.status, generation.error)
        assert generation.attempts == attempts, (name, generation.attempts, generation.error)
        if status == "done":
            assert generation.text == words and generation.error == "" and generation.finish_reason == "stop", name
        else:
            assert words in generation.error, (name, generation.error)
        assert generation.lease_token is None
    # A broken stream's partial text never survives into a generation that then finished.
    assert "Once upon a" not in Generation.objects.get(pk=generations["resets-mid-stream"].pk).text
    assert len(servers["resets-mid-stream"].requests) == 2 and len(servers["garbage"].requests) == 1
