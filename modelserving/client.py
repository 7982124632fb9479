"""The one way Tandem talks to a policy variant: the OpenAI-compatible chat completions API.

vLLM in production and `transformers serve` in development speak the same protocol, so this is
the code path both exercise. Errors are sorted into transient (worth another try) and permanent,
each with a message a person can read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import openai


class EndpointError(Exception):
    """The endpoint could not produce a response. ``transient`` says whether a retry may help."""

    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    api_key: str = "EMPTY"
    connect_timeout: float = 5.0
    read_timeout: float = 60.0


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int | None
    completion_tokens: int | None
    first_token_ms: int | None
    latency_ms: int


def chat_request_body(
    *, model: str, messages: list[dict], temperature: float, top_p: float, seed: int, max_tokens: int
) -> dict:
    """Every sampling parameter explicit: vLLM otherwise falls back to the model's generation_config."""
    return {
        "model": model,
        "messages": messages,
        "temperature": temperature,
        "top_p": top_p,
        "seed": seed,
        "max_completion_tokens": max_tokens,
        "n": 1,
    }


def _client(endpoint: Endpoint, *, read_timeout: float | None = None) -> openai.OpenAI:
    """The SDK's client, built from the SDK's own types only (``openai.Timeout``,
    ``openai.DefaultHttpxClient``): the SDK chooses its HTTP library (httpx2 in 3.x) and refuses
    another library's objects."""
    read = endpoint.read_timeout if read_timeout is None else read_timeout
    timeout = openai.Timeout(connect=endpoint.connect_timeout, read=read, write=read, pool=5.0)
    # Retries are the Celery task's business (with backoff and a record of each try), not the SDK's.
    # Redirects are never followed (the SDK's own client follows them): the endpoint is the
    # variant's URL and nothing the server answers may send the prompt, or the key, anywhere else.
    http_client = openai.DefaultHttpxClient(timeout=timeout, follow_redirects=False)
    return openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key or "EMPTY",
                         timeout=timeout, max_retries=0, http_client=http_client)


def _describe(error: Exception, endpoint: Endpoint) -> EndpointError:
    where = endpoint.base_url
    if isinstance(error, openai.APITimeoutError):
        return EndpointError(
            f"The model server at {where} did not answer within {endpoint.read_timeout:g} s.", transient=True
        )
    if isinstance(error, openai.APIStatusError) and 300 <= error.status_code < 400:
        location = _short(error.response.headers.get("location", "") or "nowhere", 200)
        return EndpointError(
            f"The model server at {where} answered with a redirect (HTTP {error.status_code} to {location}); "
            "redirects are not followed. Set the variant's base URL to the server itself.", transient=False)
    if isinstance(error, openai.APIStatusError):
        detail = _status_detail(error)
        code = error.status_code
        if code >= 500 or code in (408, 429):
            return EndpointError(f"The model server at {where} answered HTTP {code}: {detail}", transient=True)
        return EndpointError(
            f"The model server at {where} refused the request (HTTP {code}): {detail}", transient=False
        )
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__ or error
        return EndpointError(f"Could not reach the model server at {where} ({_short(str(cause))}).", transient=True)
    return EndpointError(f"Unexpected answer from the model server at {where}: {_short(str(error))}", transient=False)


def _status_detail(error: openai.APIStatusError) -> str:
    """The server's own words: the JSON `detail`/`error.message`, or the body's text."""
    body = error.body
    if body is None:
        try:
            error.response.read()
            body = error.response.json()
        except Exception:
            try:
                body = error.response.text
            except Exception:
                body = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        body = (inner.get("message") or inner.get("detail")) if isinstance(inner, dict) else inner
    return _short(str(body or error.message))


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def stream_chat(endpoint: Endpoint, body: dict, *, on_text: Callable[[str], None] | None = None) -> Completion:
    """Send ``body`` with streaming on; call ``on_text(text_so_far)`` as chunks arrive.

    ``on_text`` may raise to abandon the stream (the connection is closed). Raises EndpointError.
    """
    started = time.monotonic()
    first_token_ms = None
    parts: list[str] = []
    finish_reason = ""
    usage = None
    api = _client(endpoint)
    try:
        stream = api.chat.completions.create(
            **body, stream=True, stream_options={"include_usage": True}
        )
        with stream:
            for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    delta = choice.delta.content if choice.delta else None
                    if delta:
                        if first_token_ms is None:
                            first_token_ms = int((time.monotonic() - started) * 1000)
                        parts.append(delta)
                        if on_text is not None:
                            on_text("".join(parts))
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
    except EndpointError:
        raise
    except openai.OpenAIError as error:
        raise _describe(error, endpoint) from error
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        # Bytes that are not the OpenAI streaming protocol (not JSON, not chunks): the SDK raises
        # whatever its parser hit. Not worth another try: the server is not what it should be.
        raise EndpointError(f"The model server at {endpoint.base_url} sent something that is not an OpenAI "
                            f"chat stream ({error.__class__.__name__}: {_short(str(error), 120)}).",
                            transient=False) from error
    finally:
        api.close()
    if not finish_reason:
        raise EndpointError(
            f"The model server at {endpoint.base_url} closed the stream before the response finished.",
            transient=True,
        )
    return Completion(
        text="".join(parts),
        finish_reason=finish_reason,
        prompt_tokens=getattr(usage, "prompt_tokens", None),
        completion_tokens=getattr(usage, "completion_tokens", None),
        first_token_ms=first_token_ms,
        latency_ms=int((time.monotonic() - started) * 1000),
    )


def probe(endpoint: Endpoint, *, model: str | None = None, timeout: float = 3.0) -> dict:
    """``GET /models`` through the same client the sampler builds: is the endpoint up, does it
    serve ``model``, and can this SDK talk to it at all (a client the installed SDK refuses to
    build fails here as it would fail every generation)."""
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        api = _client(replace(endpoint, connect_timeout=min(endpoint.connect_timeout, timeout)), read_timeout=timeout)
        try:
            listed = list(api.models.list())
        finally:
            api.close()
        models = [entry.id for entry in listed]
    except openai.OpenAIError as error:
        return {"ok": False, "error": str(_describe(error, endpoint)), "latency_ms": elapsed()}
    except Exception as error:  # noqa: BLE001 — the SDK refusing its own set-up is the finding
        return {"ok": False, "error": f"the client could not be used ({error.__class__.__name__}: "
                                      f"{_short(str(error), 200)})", "latency_ms": elapsed()}
    if model is not None and model not in models:
        return {"ok": False, "models": models, "error": f"the endpoint does not serve {model!r}",
                "latency_ms": elapsed()}
    # vLLM names itself as every model's owner; other servers name the model's publisher.
    server = "vLLM" if any(getattr(entry, "owned_by", "") == "vllm" for entry in listed) else ""
    return {"ok": True, "models": models, "server": server, "latency_ms": elapsed()}
