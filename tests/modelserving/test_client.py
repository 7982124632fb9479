"""The sampling client (also the training jobs' client: it imports nothing of Django) against a
loopback server that misbehaves on cue."""

import pytest

from bench.scripted_server import Redirect, ScriptedServer
from modelserving import client, services
from modelserving.models import Generation

PROMPT = [{"role": "user", "content": "Write a haiku about tea."}]


@pytest.fixture
def elsewhere():
    """Another server, on another host name, that a redirect points to; it would answer happily."""
    server = ScriptedServer([], default="Sent somewhere else.").start()
    yield server
    server.stop()


@pytest.fixture
def redirecting(elsewhere):
    target = elsewhere.base_url.replace("127.0.0.1", "localhost") + "/chat/completions"
    server = ScriptedServer([Redirect(target), Redirect(target, status=302)]).start()
    yield server
    server.stop()


def test_the_client_never_follows_a_redirect(redirecting, elsewhere):
    # A compromised or misconfigured endpoint answers 307/302 to another host: the prompt must not
    # travel there. The training jobs sample through this same function.
    body = client.chat_request_body(model="m", messages=PROMPT, temperature=0.7, top_p=0.9, seed=1, max_tokens=8)
    for status in (307, 302):
        with pytest.raises(client.EndpointError) as refused:
            client.stream_chat(client.Endpoint(base_url=redirecting.base_url), body)
        assert not refused.value.transient
        assert f"answered with a redirect (HTTP {status} to http://localhost:" in str(refused.value)
        assert "redirects are not followed" in str(refused.value)
    assert len(redirecting.requests) == 2 and elsewhere.requests == []


@pytest.mark.django_db
def test_a_generation_whose_server_redirects_fails_with_the_reason(redirecting, elsewhere, variant_factory,
                                                                     monkeypatch):
    monkeypatch.setattr("modelserving.tasks.generation_sample.delay_on_commit", lambda *args: None)
    variant_factory("redirected", redirecting)
    generation = services.pair_request(messages=PROMPT).generations.first()
    outcome = services.generation_sample(generation_id=generation.pk)
    generation.refresh_from_db()
    assert outcome.state == "failed" and generation.status == Generation.Status.FAILED and generation.attempts == 1
    assert "answered with a redirect (HTTP 307" in generation.error and elsewhere.requests == []
