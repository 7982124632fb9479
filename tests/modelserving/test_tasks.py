"""Sampling through a real Celery worker process, the real broker and real model servers."""

import os
import signal

import httpx
import pytest

from modelserving import services, tasks
from modelserving.models import Generation
from tests.helpers.forwarder import LateDoor
from tests.helpers.silent_server import SilentServer

from ..conftest import WORKER_SAMPLING, pair_finished, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

PROMPT = [{"role": "user", "content": "Tell me a story about a lighthouse."}]
MAX_ATTEMPTS = int(WORKER_SAMPLING["SAMPLING_MAX_ATTEMPTS"])


def test_a_pair_is_sampled_by_the_worker_with_both_generations_running_at_once(
        celery_worker, model_servers, variant_factory):
    variant_factory("cool", model_servers[0], max_new_tokens=300, temperature_min=0.5, temperature_max=0.8)
    variant_factory("warm", model_servers[1], max_new_tokens=300, temperature_min=1.0, temperature_max=1.3)
    pair = services.pair_request(messages=PROMPT)
    first, second = pair_finished(pair)
    assert first.status == second.status == Generation.Status.DONE
    assert first.text and second.text and first.completion_tokens and second.completion_tokens
    assert first.worker != second.worker, "the two generations ran in different worker processes"
    # Their running intervals overlap: each started before the other finished.
    assert first.started_at < second.finished_at and second.started_at < first.finished_at


def test_a_model_server_that_comes_up_late_is_retried_then_done(celery_worker, model_server, variant_factory):
    # The server's address refuses connections until after the first failed try, then answers at once (a
    # door forwarding to a ready server), so the test does not depend on how long a server takes to load.
    # The server behind the door has loaded its model (transformers serve loads it on the first request).
    httpx.post(model_server.base_url + "/chat/completions", timeout=120, json={
        "model": model_server.model_name, "messages": PROMPT, "max_tokens": 1}).raise_for_status()
    late = LateDoor(model_server.port)
    variant_factory("late", base_url=late.base_url, model_name=model_server.model_name)
    pair = services.pair_request(messages=PROMPT)
    generation = pair.generations.first()
    wait_for(lambda: Generation.objects.filter(pk=generation.pk, attempts__gte=1, error__contains="Could not reach")
             .exists(), timeout=60, message="a first failed try")
    late.open()
    try:
        generations = pair_finished(pair, timeout=120)
    finally:
        late.close()
    for generation in generations:
        assert generation.status == Generation.Status.DONE, generation.error
        assert generation.attempts >= 2
        assert generation.error == ""


def test_a_server_that_never_answers_fails_after_the_last_try_with_the_reason(celery_worker, variant_factory):
    silent = SilentServer()
    try:
        variant_factory("silent", base_url=silent.base_url, model_name="m")
        generation = services.pair_request(messages=PROMPT).generations.first()
        wait_for(lambda: Generation.objects.get(pk=generation.pk).is_finished, timeout=150,
                 message="the generation to give up")
        generation.refresh_from_db()
        assert generation.status == Generation.Status.FAILED
        assert generation.attempts == MAX_ATTEMPTS
        assert generation.error.startswith(f"Gave up after {MAX_ATTEMPTS} tries.")
        assert "did not answer within" in generation.error
        assert silent.drain() >= MAX_ATTEMPTS
    finally:
        silent.close()


def test_the_same_task_delivered_twice_gives_one_result(celery_worker, model_servers, variant_factory):
    variant_factory("cool", model_servers[0], max_new_tokens=200)
    pair = services.pair_request(messages=PROMPT)
    generation = pair.generations.first()
    for _ in range(2):
        tasks.generation_sample.delay(generation.pk)
    generations = pair_finished(pair)
    wait_for(lambda: "modelserving.generation_sample" in celery_worker.log_path.read_text(), timeout=10)
    # Let the duplicate messages be consumed: each comes back once the lease has lapsed, sees the
    # generation done, and leaves it alone.
    import time

    time.sleep(float(WORKER_SAMPLING["SAMPLING_LEASE_SECONDS"]) + 3)
    generation.refresh_from_db()
    assert generation.status == Generation.Status.DONE
    assert generation.attempts == 1
    assert generation.text == generations[0].text


def test_a_worker_killed_mid_generation_is_redelivered_and_done_exactly_once(
        celery_worker, model_servers, variant_factory):
    variant_factory("long", model_servers[0], max_new_tokens=1500, temperature_min=1.0, temperature_max=1.0)
    variant_factory("other", model_servers[1], max_new_tokens=16)
    pair = services.pair_request(messages=PROMPT)
    victim = pair.generations.get(variant__name="long")
    running = wait_for(
        lambda: Generation.objects.filter(pk=victim.pk, status="running").exclude(text="").first(),
        timeout=60, message="the long generation to stream")
    killed_pid = int(running.worker.rsplit(":", 1)[1])
    assert killed_pid in celery_worker.child_pids()
    os.kill(killed_pid, signal.SIGKILL)

    generations = pair_finished(pair, timeout=120)
    victim.refresh_from_db()
    assert victim.status == Generation.Status.DONE
    assert victim.attempts == 2, "one killed try, one redelivered try"
    assert int(victim.worker.rsplit(":", 1)[1]) != killed_pid
    assert victim.completion_tokens and victim.finish_reason
    assert all(g.status == Generation.Status.DONE for g in generations)


def test_an_endpoint_url_in_request_data_is_ignored(celery_worker, client, model_servers, variant_factory,
                                                    django_user_model):
    from accounts.services import user_create

    user_create(username="res", password="a-long-password-9", role="researcher")
    client.login(username="res", password="a-long-password-9")
    variant = variant_factory("cool", model_servers[0])
    elsewhere = SilentServer()
    try:
        response = client.post(
            "/api/pairs/",
            {"messages": [{"role": "user", "content": "hi"}], "base_url": elsewhere.base_url,
             "model": "attacker-model", "variant": {"base_url": elsewhere.base_url}},
            content_type="application/json",
        )
        assert response.status_code == 201, response.content
        pair_id = response.json()["id"]
        from modelserving.models import Pair

        generations = pair_finished(Pair.objects.get(pk=pair_id))
        assert all(g.status == Generation.Status.DONE for g in generations)
        assert all(g.variant_id == variant.id and g.request_body["model"] == variant.model_name
                   for g in generations)
        assert elsewhere.drain() == 0, "nothing was sent to the URL in the request"
    finally:
        elsewhere.close()
