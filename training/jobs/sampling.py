"""The jobs' own sampling client: one answer per request from an OpenAI-compatible endpoint
(vLLM, `transformers serve`), every sampling parameter explicit, transient errors tried again with
backoff. No Django and nothing of the apps: a job on a GPU box needs only its inputs (the web
side's client is modelserving/client.py; this one is small on purpose, since a job keeps no rows).

Used by rejection sampling, Ghost Attention and the model-based evaluation.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .common import emit


class SampleError(Exception):
    """No answer. ``transient``: a timeout, a dropped connection, HTTP 5xx/408/429 (worth another try)."""

    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _server_words(error) -> str:
    """The JSON `error.message` / `detail` of a refused request, or its text."""
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        body = (inner.get("message") or inner.get("detail")) if isinstance(inner, dict) else inner
    if body is None:
        try:
            body = error.response.text
        except Exception:  # noqa: BLE001 — a body that cannot be read says nothing more
            body = None
    return _short(str(body or error.message))


def _client(base_url: str, api_key: str, timeout: float):
    """The SDK's client from the SDK's own types only (``openai.Timeout``,
    ``openai.DefaultHttpxClient``): openai 3.x runs on httpx2 and refuses another library's objects.
    Redirects are not followed: nothing the server answers may send the prompt, or the key, elsewhere."""
    import openai

    limits = openai.Timeout(connect=5.0, read=timeout, write=timeout, pool=5.0)
    return openai.OpenAI(base_url=base_url, api_key=api_key or "EMPTY", max_retries=0, timeout=limits,
                         http_client=openai.DefaultHttpxClient(timeout=limits, follow_redirects=False))


def chat(*, base_url: str, api_key: str, body: dict, timeout: float) -> dict:
    """Stream one chat completion; returns text, finish_reason, completion_tokens and latency_ms.
    Raises SampleError."""
    import openai

    client = _client(base_url, api_key, timeout)
    started, parts, finish_reason, usage = time.monotonic(), [], "", None
    try:
        stream = client.chat.completions.create(**body, stream=True, stream_options={"include_usage": True})
        with stream:
            for chunk in stream:
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        parts.append(choice.delta.content)
                    finish_reason = choice.finish_reason or finish_reason
    except openai.APITimeoutError as error:
        raise SampleError(f"{base_url} did not answer within {timeout:g} s.", transient=True) from error
    except openai.APIStatusError as error:
        code = error.status_code
        raise SampleError(f"{base_url} answered HTTP {code}: {_server_words(error)}",
                          transient=code >= 500 or code in (408, 429)) from error
    except openai.APIConnectionError as error:
        raise SampleError(f"Could not reach {base_url} ({_short(str(error.__cause__ or error))}).",
                          transient=True) from error
    except (openai.OpenAIError, ValueError, TypeError, AttributeError, KeyError) as error:
        raise SampleError(f"{base_url} sent something that is not an OpenAI chat stream "
                          f"({error.__class__.__name__}: {_short(str(error), 120)}).",
                          transient=False) from error
    finally:
        client.close()
    if not finish_reason:
        raise SampleError(f"{base_url} closed the stream before the response finished.", transient=True)
    return {"text": "".join(parts), "finish_reason": finish_reason,
            "completion_tokens": getattr(usage, "completion_tokens", None),
            "latency_ms": int((time.monotonic() - started) * 1000)}


def served_models(base_url: str, *, api_key: str = "", timeout: float = 5.0) -> list[str]:
    """GET {base_url}/models: the names the endpoint serves. Raises RuntimeError when it cannot say."""
    import openai

    client = _client(base_url, api_key, timeout)
    try:
        return [entry.id for entry in client.models.list()]
    except (openai.OpenAIError, ValueError) as error:
        why = _short(str(error.__cause__ or error) or type(error).__name__)
        raise RuntimeError(f"{base_url}: no model to sample from ({why})") from error
    finally:
        client.close()


@dataclass(frozen=True)
class Sampler:
    """One answer per call, every sampling parameter explicit (vLLM otherwise falls back to the
    model's generation_config; `transformers serve` ignores `n`, so one request per sample)."""

    endpoint: str
    model: str
    api_key: str = "EMPTY"
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 1024
    timeout: float = 300.0
    max_attempts: int = 3
    backoff: float = 1.0  # seconds before the second try, doubled for each later one

    def __call__(self, messages: list[dict], *, seed: int) -> dict:
        body = {"model": self.model, "messages": messages, "temperature": self.temperature,
                "top_p": self.top_p, "seed": seed, "max_completion_tokens": self.max_tokens, "n": 1}
        for attempt in range(1, self.max_attempts + 1):
            try:
                answer = chat(base_url=self.endpoint, api_key=self.api_key, body=body, timeout=self.timeout)
            except SampleError as error:
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
    """The Sampler of a job config with endpoint/model/… fields; asks /models when no model is named."""
    api_key = endpoint_key(config.api_key, getattr(config, "api_key_env", ""))
    model = config.model
    if not model:
        models = served_models(config.endpoint, api_key=api_key)
        if not models:
            raise RuntimeError(f"{config.endpoint}: no model to sample from (none listed)")
        model = models[0]
    return Sampler(endpoint=config.endpoint, model=model, api_key=api_key,
                   temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens,
                   timeout=config.request_timeout, max_attempts=config.max_attempts)


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
