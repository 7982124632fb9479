import random
import threading

import pytest
from django.core.exceptions import ValidationError

from modelserving import services
from modelserving.models import Generation, Pair

from ..conftest import wait_for

PROMPT = [{"role": "user", "content": "Write a haiku about tea."}]


@pytest.fixture
def undispatched(monkeypatch):
    """These tests run the sampling service themselves: keep the tasks away from a worker that a
    test elsewhere in the session may have started."""
    sent = []
    monkeypatch.setattr("modelserving.tasks.generation_sample.delay_on_commit", sent.append)
    return sent


@pytest.mark.django_db
def test_pair_request_stores_both_generations_with_the_exact_request(variant_factory, model_servers,
                                                                    django_capture_on_commit_callbacks):
    cool = variant_factory("cool", model_servers[0], temperature_min=0.5, temperature_max=0.8, top_p=0.95)
    warm = variant_factory("warm", model_servers[1], temperature_min=1.0, temperature_max=1.3)
    with django_capture_on_commit_callbacks() as callbacks:
        pair = services.pair_request(messages=PROMPT, rng=random.Random(4))
    assert len(callbacks) == 2, "one task per generation, sent only after the commit"
    generations = list(pair.generations.order_by("position"))
    assert {g.variant_id for g in generations} == {cool.id, warm.id}
    for generation in generations:
        variant = generation.variant
        assert variant.temperature_min <= generation.temperature <= variant.temperature_max
        assert generation.request_body == {
            "model": variant.model_name, "messages": PROMPT, "temperature": generation.temperature,
            "top_p": variant.top_p, "seed": generation.seed, "max_completion_tokens": variant.max_new_tokens,
            "n": 1,
        }
        assert generation.status == Generation.Status.QUEUED
    assert pair.strategy == Pair.Strategy.TWO_VARIANTS
    assert [c["seed"] for c in pair.pairing["choices"]] == [g.seed for g in generations]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "messages, message",
    [
        ([], "non-empty list"),
        ([{"role": "user", "content": "  "}], "has no text"),
        ([{"role": "wizard", "content": "hi"}], "role 'wizard'"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "must be the user's"),
        ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}, {"role": "user", "content": "c"}],
         "Only the first message"),
        ([{"role": "user", "content": "hi", "base_url": "http://elsewhere/v1"}], "exactly a role and a content"),
    ],
)
def test_malformed_context_is_refused_and_stores_nothing(variant_factory, model_server, messages, message):
    variant_factory("cool", model_server)
    with pytest.raises(ValidationError, match=message):
        services.pair_request(messages=messages)
    assert not Pair.objects.exists() and not Generation.objects.exists()


@pytest.mark.django_db
def test_no_active_variant_is_refused_and_stores_nothing(variant_factory, model_server):
    variant_factory("cool", model_server, is_active=False)
    with pytest.raises(services.NoActiveVariant):
        services.pair_request(messages=PROMPT)
    assert not Pair.objects.exists()


@pytest.mark.django_db
def test_variant_with_inverted_temperature_range_is_refused(variant_factory, model_server):
    with pytest.raises(ValidationError, match="at least the minimum"):
        variant_factory("odd", model_server, temperature_min=1.2, temperature_max=0.4)


@pytest.mark.django_db(transaction=True)
def test_sampling_streams_partial_text_to_readers_and_stores_the_outcome(variant_factory, model_servers, undispatched):
    variant_factory("long", model_servers[0], max_new_tokens=400)
    pair = services.pair_request(messages=PROMPT)  # no worker here: the tasks are never consumed
    generation = pair.generations.get(position=1)
    seen_partial = []

    def reader():
        def partial():
            row = Generation.objects.values("status", "text").get(pk=generation.pk)
            if row["status"] == "running" and row["text"]:
                seen_partial.append(row["text"])
            return len(seen_partial) >= 2 or row["status"] == "done"
        wait_for(partial, timeout=60, interval=0.05)

    thread = threading.Thread(target=reader)
    thread.start()
    outcome = services.generation_sample(generation_id=generation.pk, worker="test")
    thread.join()
    assert outcome.state == "done"
    generation.refresh_from_db()
    assert generation.status == Generation.Status.DONE
    assert len(seen_partial) >= 2, "readers saw text while it was produced"
    assert generation.text.startswith(seen_partial[0])
    assert generation.completion_tokens and generation.prompt_tokens
    assert generation.finish_reason in {"stop", "length"}
    assert generation.attempts == 1 and generation.latency_ms is not None
    assert generation.lease_token is None and generation.finished_at is not None

    again = services.generation_sample(generation_id=generation.pk, worker="test")
    assert again.state == "skipped"
    generation.refresh_from_db()
    assert generation.attempts == 1, "a finished generation is never produced again"


@pytest.mark.django_db(transaction=True)
def test_a_refused_request_fails_at_once_with_the_servers_reason(variant_factory, model_server, undispatched):
    # The server is pinned to one model; asking for another is a 4xx that no retry can fix.
    variant_factory("wrong-model", model_server, model_name="not-served")
    pair = services.pair_request(messages=PROMPT)
    generation = pair.generations.first()
    outcome = services.generation_sample(generation_id=generation.pk)
    generation.refresh_from_db()
    assert outcome.state == "failed" and outcome.retry_after is None
    assert generation.status == Generation.Status.FAILED and generation.attempts == 1
    assert "refused the request (HTTP 4" in generation.error and "not-served" in generation.error


@pytest.mark.django_db(transaction=True)
def test_unreachable_endpoint_asks_for_a_retry_with_growing_backoff(variant_factory, settings, undispatched):
    from bench.processes import free_port

    settings.SAMPLING = {**settings.SAMPLING, "MAX_ATTEMPTS": 3, "BACKOFF_BASE": 2.0, "BACKOFF_MAX": 100.0}
    variant_factory("gone", base_url=f"http://127.0.0.1:{free_port()}/v1", model_name="m")
    generation = services.pair_request(messages=PROMPT).generations.first()
    delays = []
    for _ in range(2):
        outcome = services.generation_sample(generation_id=generation.pk)
        assert outcome.state == "retry"
        delays.append(outcome.retry_after)
        generation.refresh_from_db()
        assert generation.status == Generation.Status.QUEUED
        assert "Could not reach the model server" in generation.error
    assert 1.0 <= delays[0] <= 2.0 and 2.0 <= delays[1] <= 4.0
    outcome = services.generation_sample(generation_id=generation.pk)
    generation.refresh_from_db()
    assert outcome.state == "failed" and generation.status == Generation.Status.FAILED
    assert generation.error.startswith("Gave up after 3 tries.")


@pytest.mark.django_db(transaction=True)
def test_a_live_lease_makes_a_second_delivery_wait(variant_factory, model_server, undispatched):
    variant_factory("cool", model_server)
    generation = services.pair_request(messages=PROMPT).generations.first()
    claimed, _ = services._claim(generation.pk, "first-worker")
    outcome = services.generation_sample(generation_id=generation.pk, worker="second-worker")
    assert outcome.state == "busy" and outcome.retry_after > 0
    generation.refresh_from_db()
    assert generation.attempts == 1 and generation.worker == "first-worker"


@pytest.mark.django_db
def test_requeue_gives_a_failed_generation_fresh_tries(variant_factory, model_server,
                                                       django_capture_on_commit_callbacks):
    variant = variant_factory("wrong-model", model_server, model_name="not-served")
    generation = services.pair_request(messages=PROMPT).generations.first()
    services.generation_sample(generation_id=generation.pk)
    generation.refresh_from_db()
    with pytest.raises(ValidationError):
        services.generation_requeue(generation=Generation.objects.exclude(pk=generation.pk).first())
    services.variant_update(variant=variant, model_name=model_server.model_name)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.generation_requeue(generation=generation)
    assert len(callbacks) == 1
    generation.refresh_from_db()
    assert generation.status == Generation.Status.QUEUED and generation.attempts == 0 and not generation.error


@pytest.mark.django_db
def test_a_variant_may_point_at_a_compose_service_name_but_only_over_http():
    # docker-compose.yml names its vLLM servers vllm-cool, vllm-warm: single-label hosts.
    variant = services.variant_create(name="chat-cool", base_url="http://vllm-cool:8000/v1", model_name="chat-cool",
                                      temperature_min=0.5, temperature_max=0.8)
    assert variant.base_url == "http://vllm-cool:8000/v1"
    for bad in ("ftp://vllm-cool/v1", "vllm-cool:8000", "http://", "http://host:port/v1", "http://a b/v1"):
        with pytest.raises(ValidationError):
            services.variant_create(name="bad", base_url=bad, model_name="m", temperature_min=0.5,
                                    temperature_max=0.8)


@pytest.mark.django_db
def test_the_stored_order_of_a_pair_says_nothing_about_the_weights(variant_factory, undispatched):
    # A weighted draw picks the heavy variant first almost always; stored in draw order, the lower
    # generation id would tell an annotator which response came from it.
    heavy = variant_factory("heavy", base_url="http://127.0.0.1:9/v1", model_name="m", sampling_weight=1000)
    variant_factory("light", base_url="http://127.0.0.1:9/v1", model_name="m", sampling_weight=0.001)
    rng = random.Random(11)
    heavy_first = 0
    for _ in range(120):
        pair = services.pair_request(messages=PROMPT, rng=rng)
        first = min(pair.generations.all(), key=lambda g: g.pk)
        assert first.position == 1
        heavy_first += first.variant_id == heavy.id
        assert pair.pairing["choices"][0]["variant_id"] == heavy.id, "the draw itself is weighted"
    assert 35 <= heavy_first <= 85


@pytest.mark.django_db
def test_annotators_see_a_generic_error_with_a_reference(variant_factory, undispatched):
    variant_factory("cool", base_url="http://127.0.0.1:9/v1", model_name="m")
    pair = services.pair_request(messages=PROMPT)
    generation = pair.generations.first()
    generation.status, generation.error = Generation.Status.FAILED, "The model server at http://127.0.0.1:9/v1 …"
    assert generation.annotator_error() == f"The model could not answer. (reference G-{generation.pk})"
    assert "Retry, or mark the pair unusable." in generation.annotator_error_for_pair
    assert "127.0.0.1" not in generation.annotator_error_for_pair


@pytest.mark.django_db(transaction=True)
def test_partial_text_is_written_only_when_it_changed(variant_factory, settings, undispatched, monkeypatch):
    """A stream that repeats itself (keep-alive chunks, empty deltas) costs no partial writes: with
    no throttle at all, ten chunks carrying two distinct texts make two partial writes and the final one."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from modelserving import client

    settings.SAMPLING = {**settings.SAMPLING, "FLUSH_INTERVAL": 0.0}
    variant_factory("steady", base_url="http://127.0.0.1:9/v1", model_name="m")
    generation = services.pair_request(messages=PROMPT).generations.first()

    def stream(endpoint, body, *, on_text=None):
        for text in ["Hello"] * 5 + ["Hello there"] * 5:
            on_text(text)
        return client.Completion(text="Hello there", finish_reason="stop", prompt_tokens=3, completion_tokens=2,
                                 first_token_ms=1, latency_ms=2)

    monkeypatch.setattr(client, "stream_chat", stream)
    with CaptureQueriesContext(connection) as queries:
        assert services.generation_sample(generation_id=generation.pk).state == "done"
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "modelserving_generation"')]
    assert len(writes) == 1 + 2 + 1, writes  # the claim, two partial texts, the final write
    generation.refresh_from_db()
    assert generation.text == "Hello there" and generation.status == Generation.Status.DONE
