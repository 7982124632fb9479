"""The jobs' sampling: one answer per request from an OpenAI-compatible endpoint (vLLM,
`transformers serve`), every sampling parameter explicit, transient errors tried again with
backoff. It speaks through the sampler's client (modelserving/client.py, Django-free like the
jobs); the rest is the jobs' own: retries (the web side leaves them to Celery), the model asked
of /models when none is named, and running samples concurrently with progress events.

Used by rejection sampling, Ghost Attention and the model-based evaluation.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from modelserving.client import Endpoint, EndpointError, chat_request_body, probe, stream_chat

from .common import emit


def chat(*, base_url: str, api_key: str, body: dict, timeout: float) -> dict:
    """Stream one chat completion through the sampler's own client (modelserving/client.py: one
    set of rules for timeouts, redirects and the server's words); returns text, finish_reason,
    completion_tokens and latency_ms. Raises EndpointError (``transient`` says if a retry may help)."""
    endpoint = Endpoint(base_url=base_url, api_key=api_key or "EMPTY", read_timeout=timeout)
    answer = stream_chat(endpoint, body)
    return {"text": answer.text, "finish_reason": answer.finish_reason,
            "completion_tokens": answer.completion_tokens, "latency_ms": answer.latency_ms}


def served(base_url: str, *, api_key: str = "", timeout: float = 5.0) -> tuple[list[str], str]:
    """GET {base_url}/models: the names the endpoint serves, and "vLLM" when vLLM serves them ("" for
    another server). Raises RuntimeError when it cannot say."""
    answer = probe(Endpoint(base_url=base_url, api_key=api_key or "EMPTY"), timeout=timeout)
    if not answer["ok"]:
        raise RuntimeError(f"{base_url}: no model to sample from ({answer['error']})")
    return answer["models"], answer.get("server", "")


# Requests in flight against one server when a job leaves it to the server (concurrency 0): vLLM
# batches what arrives together (continuous batching), so many at once is what makes it fast;
# a server that answers one request at a time (`transformers serve` here) only makes the others
# wait, past their read timeout when many queue.
IN_FLIGHT = {"vLLM": 32, "": 2}


def in_flight(concurrency: int, server: str) -> int:
    """A job's ``concurrency``, or for 0 what suits the server that answers."""
    return concurrency if concurrency > 0 else IN_FLIGHT.get(server, IN_FLIGHT[""])


@dataclass(frozen=True)
class Sampler:
    """One answer per call, every sampling parameter explicit (vLLM otherwise falls back to the
    model's generation_config; `transformers serve` ignores `n`, so one request per sample)."""

    endpoint: str
    model: str
    api_key: str = "EMPTY"
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 1024
    timeout: float = 300.0
    max_attempts: int = 3
    backoff: float = 1.0  # seconds before the second try, doubled for each later one
    server: str = ""  # "vLLM" when vLLM serves the endpoint (its /models says so), else ""

    def __call__(self, messages: list[dict], *, seed: int, temperature: float | None = None) -> dict:
        """One answer; ``temperature`` overrides the sampler's own for this request."""
        body = chat_request_body(model=self.model, messages=messages,
                                 temperature=self.temperature if temperature is None else temperature,
                                 top_p=self.top_p, seed=seed, max_tokens=self.max_new_tokens)
        for attempt in range(1, self.max_attempts + 1):
            try:
                answer = chat(base_url=self.endpoint, api_key=self.api_key, body=body, timeout=self.timeout)
            except EndpointError as error:
                if error.transient and attempt < self.max_attempts:
                    time.sleep(min(self.backoff * 2 ** (attempt - 1), 30.0))
                    continue
                return {"text": None, "error": str(error), "attempts": attempt, "seed": seed}
            return {**answer, "attempts": attempt, "seed": seed, "error": None}
        raise AssertionError("unreachable")


def endpoint_key(api_key: str = "EMPTY", api_key_env: str = "") -> str:
    """The endpoint's token: read from the variable named (Tandem passes the name, never the key, so
    it shows in no process list or job record), else the one given."""
    if api_key_env:
        if not api_key_env.startswith("TANDEM_VARIANT_KEY_"):
            raise ValueError(f"api_key_env must name a TANDEM_VARIANT_KEY_* variable, not {api_key_env!r}")
        return os.environ.get(api_key_env) or "EMPTY"
    return api_key or "EMPTY"


def sampler_for(config) -> Sampler:
    """The Sampler of a job config with endpoint/model/… fields. Asks /models which model it serves
    (when none is named) and whether vLLM serves it (the job's concurrency follows: in_flight)."""
    api_key = endpoint_key(config.api_key, getattr(config, "api_key_env", ""))
    models, server = served(config.endpoint, api_key=api_key)
    model = config.model
    if not model:
        if not models:
            raise RuntimeError(f"{config.endpoint}: no model to sample from (none listed)")
        model = models[0]
    return Sampler(endpoint=config.endpoint, model=model, api_key=api_key,
                   temperature=config.temperature, top_p=config.top_p, max_new_tokens=config.max_new_tokens,
                   timeout=config.request_timeout, max_attempts=config.max_attempts, server=server)


def run_concurrently(tasks, *, concurrency: int, phase: str, metrics_path: Path | None,
                     unit: str = "samples"):
    """Run zero-argument callables `concurrency` at a time; yields (index, result) as they finish
    and emits `log` progress events (step = finished, max_steps = all) about twenty times."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    total, done, failed = len(tasks), 0, 0
    every = max(1, math.ceil(total / 20))
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {pool.submit(task): index for index, task in enumerate(tasks)}
        for future in as_completed(futures):
            result = future.result()
            done += 1
            failed += bool(isinstance(result, dict) and result.get("error"))
            if done % every == 0 or done == total:
                record = {"step": done, "max_steps": total, "phase": phase, f"failed_{unit}": failed}
                emit("log", **record)
                if metrics_path is not None:
                    with open(metrics_path, "a") as handle:
                        handle.write(json.dumps(record) + "\n")
            yield futures[future], result
