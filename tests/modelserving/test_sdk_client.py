"""The one OpenAI-compatible client (modelserving/client.py), which the sampler and the jobs
(training/jobs/sampling.py) both speak through, builds the SDK's client from the SDK's own types
only, and streams through the installed SDK from a real
OpenAI-compatible server (the tiny model's `transformers serve`), with no mock of the SDK.

A fresh install once resolved httpx2 2.17, which refuses an ``httpx.Timeout``: every generation
failed while these modules handed the SDK httpx's objects. With the lock's httpx2 these tests fail
the same way if that comes back."""

import ast
from pathlib import Path

import openai
import pytest

from modelserving import client
from training.jobs import sampling

ROOT = Path(__file__).resolve().parents[2]
PROMPT = [{"role": "user", "content": "Say hello."}]


def test_the_workers_client_streams_from_a_real_server(model_server):
    endpoint = client.Endpoint(base_url=model_server.base_url, connect_timeout=5, read_timeout=60)
    body = client.chat_request_body(model=model_server.model_name, messages=PROMPT, temperature=0.7, top_p=0.9,
                                    seed=3, max_tokens=6)
    seen = []
    completion = client.stream_chat(endpoint, body, on_text=seen.append)
    assert completion.finish_reason in ("stop", "length") and completion.completion_tokens
    assert seen and seen[-1] == completion.text
    api = client._client(endpoint)
    try:
        assert isinstance(api.timeout, openai.Timeout) and api.timeout.read == 60
        assert isinstance(api._client, openai.DefaultHttpxClient)
    finally:
        api.close()
    assert client.probe(endpoint, model=model_server.model_name)["ok"]


def test_the_jobs_client_streams_from_a_real_server(model_server):
    answer = sampling.chat(base_url=model_server.base_url, api_key="", timeout=60, body={
        "model": model_server.model_name, "messages": PROMPT, "temperature": 0.7, "top_p": 0.9, "seed": 3,
        "max_completion_tokens": 6})
    assert answer["finish_reason"] in ("stop", "length") and answer["completion_tokens"]
    assert sampling.served(model_server.base_url) == ([model_server.model_name], "")


def test_a_server_that_is_down_is_described_by_both_clients():
    dead = "http://127.0.0.1:9/v1"
    result = client.probe(client.Endpoint(base_url=dead), timeout=2)
    assert not result["ok"] and result["error"].startswith(f"Could not reach the model server at {dead}")
    with pytest.raises(RuntimeError, match=f"no model to sample from .Could not reach the model server at {dead}"):
        sampling.served(dead, timeout=2)


@pytest.mark.parametrize("module", ["modelserving/client.py", "training/jobs/sampling.py"])
def test_the_client_hands_the_sdk_no_other_librarys_objects(module):
    # The SDK picks its HTTP library (httpx2 in 3.x); these modules import none of their own.
    tree = ast.parse((ROOT / module).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"httpx", "httpx2", "requests", "aiohttp"}, imported
