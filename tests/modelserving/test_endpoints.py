"""Endpoints are trusted configuration: allowed hosts checked on save and before every request, keys
only from TANDEM_VARIANT_KEY_* variables (sent by sampling, /health and the jobs), and an endpoint a
researcher files waits for an admin before anything samples it."""

import random

import pytest
from django.core.checks import run_checks
from django.core.exceptions import PermissionDenied, ValidationError

from bench.scripted_server import ScriptedServer
from modelserving import services
from modelserving.endpoints import endpoint_allowed, host_matches
from modelserving.models import Generation, PolicyVariant
from modelserving.selectors import active_variants

PROMPT = [{"role": "user", "content": "Hello?"}]


@pytest.mark.parametrize("url, pattern, allowed", [
    ("http://vllm.svc:8000/v1", "*.svc", True),
    # One label only: a wildcard must not let a name under the attacker's control through.
    ("http://evil.com.svc:8000/v1", "*.svc", False),
    ("http://svc:8000/v1", "*.svc", False),
    ("http://vllm.svc.evil.com/v1", "*.svc", False),
    ("http://VLLM-Cool:8000/v1", "vllm-cool", True),
    ("http://vllm-cool.:8000/v1", "vllm-cool", True),
    ("http://vllm-cool:8000/v1", "vllm-cool:8000", True),
    ("http://vllm-cool:8001/v1", "vllm-cool:8000", False),
    ("http://vllm-cool/v1", "vllm-cool:80", True),  # the scheme's default port
    ("https://vllm-cool/v1", "vllm-cool:80", False),
    ("http://[::1]:8000/v1", "[::1]", True),
    ("http://[::1]:8000/v1", "[::1]:8001", False),
    ("http://127.0.0.1:5/v1", "127.0.0.1", True),
    ("http://127.0.0.2:5/v1", "127.0.0.1", False),
    ("http://127.0.0.1@evil.com/v1", "127.0.0.1", False),
])
def test_host_patterns(url, pattern, allowed):
    assert endpoint_allowed(url, [pattern]) is allowed


def test_a_wildcard_label_is_a_dns_label():
    assert not host_matches("a b.svc", 80, "*.svc") and not host_matches(".svc", 80, "*.svc")


@pytest.mark.django_db
def test_a_variant_on_a_host_not_allowed_is_refused_on_save(variant_factory, settings):
    settings.VARIANT_ALLOWED_HOSTS = ["vllm-cool"]
    with pytest.raises(ValidationError, match="VARIANT_ALLOWED_HOSTS"):
        variant_factory("outside", base_url="http://169.254.169.254/latest", model_name="m")
    assert not PolicyVariant.objects.exists()


# A variant saved before the setting changed (or a row written past validation) is refused at
# request time: nothing is sent to the host.
@pytest.mark.django_db
def test_sampling_checks_the_host_again_before_every_request(variant_factory, settings, monkeypatch):
    monkeypatch.setattr("modelserving.tasks.generation_sample.delay_on_commit", lambda *args: None)
    server = ScriptedServer([]).start()
    try:
        variant_factory("cool", base_url=server.base_url, model_name=server.model_name)
        pair = services.pair_request(messages=PROMPT)
        settings.VARIANT_ALLOWED_HOSTS = ["vllm-cool"]
        for generation in pair.generations.all():
            assert services.generation_sample(generation_id=generation.pk).state == "failed"
        assert server.requests == []
        assert all("VARIANT_ALLOWED_HOSTS" in g.error for g in pair.generations.all())
        [warning] = [w for w in run_checks() if w.id == "modelserving.W003"]
        assert "cool" in warning.msg
    finally:
        server.stop()


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["SECRET_KEY", "DATABASE_URL", "tandem_variant_key_x", "TANDEM_VARIANT_KEY_"])
def test_api_key_env_names_only_tandem_variant_keys(variant_factory, name):
    # Otherwise whoever sets api_key_env makes the server send its own secrets to an endpoint.
    with pytest.raises(ValidationError, match="TANDEM_VARIANT_KEY_"):
        variant_factory("keyed", base_url="http://127.0.0.1:9/v1", model_name="m", api_key_env=name)


class KeyedServer(ScriptedServer):
    """Answers only requests that carry ``Authorization: Bearer <key>``; remembers what came."""

    def __init__(self, key: str, **kwargs):
        super().__init__([], **kwargs)
        self.key, self.authorizations = key, []
        handler = self.httpd.RequestHandlerClass
        server = self

        def guarded(method):
            def run(request):
                server.authorizations.append(request.headers.get("Authorization"))
                if request.headers.get("Authorization") != f"Bearer {server.key}":
                    return request._json(401, {"error": {"message": "bad key"}})
                return method(request)
            return run

        handler.do_GET = guarded(handler.do_GET)
        handler.do_POST = guarded(handler.do_POST)


@pytest.fixture
def keyed(monkeypatch):
    monkeypatch.setenv("TANDEM_VARIANT_KEY_COOL", "s3cret-key")
    server = KeyedServer("s3cret-key").start()
    yield server
    server.stop()


@pytest.mark.django_db
def test_sampling_and_health_send_the_key(keyed, variant_factory, monkeypatch, client, make_user):
    monkeypatch.setattr("modelserving.tasks.generation_sample.delay_on_commit", lambda *args: None)
    variant_factory("cool", base_url=keyed.base_url, model_name=keyed.model_name, api_key_env="TANDEM_VARIANT_KEY_COOL")
    pair = services.pair_request(messages=PROMPT)
    for generation in pair.generations.all():
        assert services.generation_sample(generation_id=generation.pk).state == "done"
    make_user("res", "researcher")
    client.login(username="res", password="a-long-password-9")
    body = client.get("/health?format=json").json()
    assert body["variants"][0]["ok"], body
    assert set(keyed.authorizations) == {"Bearer s3cret-key"}


def test_jobs_read_the_key_from_the_variable_they_are_given(keyed):
    from training.jobs.rejection_sampling import RejectionSamplingJobConfig
    from training.jobs.sampling import in_flight, sampler_for

    # The job gets the variable's name (argv is readable by every user of the box), never the key.
    config = RejectionSamplingJobConfig(endpoint=keyed.base_url, api_key_env="TANDEM_VARIANT_KEY_COOL",
                                        max_new_tokens=8)
    sampler = sampler_for(config)  # asks /models with the key
    assert sampler.model == keyed.model_name
    # Not vLLM: two requests in flight, unless the job says otherwise (vLLM's own: test_vllm.py).
    assert sampler.server == "" and in_flight(config.concurrency, sampler.server) == 2
    assert in_flight(5, sampler.server) == 5
    assert sampler(PROMPT, seed=1)["text"] == "Fine."
    with pytest.raises(ValueError, match="TANDEM_VARIANT_KEY_"):
        sampler_for(RejectionSamplingJobConfig(endpoint=keyed.base_url, api_key_env="SECRET_KEY"))


@pytest.mark.django_db
def test_a_filed_endpoint_is_sampled_by_nothing_until_an_admin_approves(variant_factory, make_user, monkeypatch):
    from safety import evaluation, redteam

    monkeypatch.setattr("modelserving.tasks.generation_sample.delay_on_commit", lambda *args: None)
    approved = variant_factory("cool", base_url="http://127.0.0.1:9/v1", model_name="m")
    filed = variant_factory("filed", base_url="http://127.0.0.1:10/v1", model_name="m", awaiting_approval=True)
    assert list(active_variants()) == [approved]
    # Pairing: only the approved variant is drawn.
    for seed in range(10):
        pair = services.pair_request(messages=PROMPT, rng=random.Random(seed))
        assert {g.variant_id for g in pair.generations.all()} == {approved.pk}
    # One response from it (evaluations, red teaming) is refused; red teamers are not offered it.
    with pytest.raises(ValidationError):
        services.generation_request(variant=filed, messages=PROMPT)
    annotator = make_user("ann")
    assert list(redteam.variant_aliases(annotator=annotator).values()) == [approved]
    with pytest.raises(ValidationError):
        redteam.session_start(annotator=annotator, variant=filed, minutes=30)
    with pytest.raises(ValidationError):
        evaluation.evaluation_create(user=make_user("res", "researcher"), name="e", variants=[filed],
                                     prompts=[{"text": "x"}])
    # A generation that exists for it (written before it was filed again) is not sent either.
    generation = Generation.objects.create(variant=filed, model_name="m", messages=PROMPT, temperature=0.5,
                                           top_p=0.9, seed=1, max_tokens=8, request_body={"model": "m"})
    assert services.generation_sample(generation_id=generation.pk).state == "failed"
    generation.refresh_from_db()
    assert "approval" in generation.error

    with pytest.raises(PermissionDenied):
        services.variant_approve(variant=filed, admin=make_user("res2", "researcher"))
    services.variant_approve(variant=filed, admin=make_user("ada", "admin"))
    assert set(active_variants()) == {approved, filed}
