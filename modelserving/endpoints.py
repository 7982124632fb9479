"""Where sampling may be sent: VARIANT_ALLOWED_HOSTS, checked when a variant is saved and again
before every request (a setting that changed, or a row written around the model's validation).

A pattern is a host name, an IP address (IPv6 in brackets) or ``*.`` and a domain, optionally with
``:port``. The wildcard stands for exactly one DNS label: ``*.svc`` allows ``vllm.svc`` but neither
``svc`` nor ``evil.example.svc``. With a port, only that port (the scheme's default when the URL gives
none); without one, any port. Host names compare case-insensitively, without a trailing dot.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

API_KEY_ENV_PREFIX = "TANDEM_VARIANT_KEY_"
API_KEY_ENV_RE = re.compile(rf"^{API_KEY_ENV_PREFIX}[A-Z0-9_]+$")
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$")
DEFAULT_PORTS = {"http": 80, "https": 443}


def _host_port(url: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.hostname.lower().rstrip("."), port


def _split_pattern(pattern: str) -> tuple[str, int | None]:
    pattern = pattern.strip().lower()
    if pattern.startswith("["):  # [::1] or [::1]:8000
        host, _, rest = pattern[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    host, sep, port = pattern.rpartition(":")
    if sep and port.isdigit() and host.count(":") == 0:
        return host.rstrip("."), int(port)
    return pattern.rstrip("."), None


def host_matches(host: str, port: int, pattern: str) -> bool:
    want_host, want_port = _split_pattern(pattern)
    if want_port is not None and want_port != port:
        return False
    if want_host.startswith("*."):
        label, _, rest = host.partition(".")
        return rest == want_host[2:] and bool(_LABEL.match(label))
    return host == want_host


def endpoint_allowed(url: str, patterns: list[str] | None = None) -> bool:
    where = _host_port(url)
    if where is None:
        return False
    patterns = settings.VARIANT_ALLOWED_HOSTS if patterns is None else patterns
    return any(host_matches(*where, pattern) for pattern in patterns)


def check_endpoint(url: str) -> None:
    """ValidationError unless ``url``'s host (and port) is in VARIANT_ALLOWED_HOSTS."""
    if not endpoint_allowed(url):
        raise ValidationError(
            "This endpoint's host is not in VARIANT_ALLOWED_HOSTS: an operator adds it there first.",
            code="host_not_allowed")


def validate_api_key_env(value: str) -> None:
    if value and not API_KEY_ENV_RE.match(value):
        raise ValidationError(
            f"Name an environment variable that starts with {API_KEY_ENV_PREFIX} (capitals, digits, _): "
            "no other variable of the server's environment can be sent to an endpoint.")


def api_key_of(api_key_env: str) -> str:
    """The key in the variable named (only ever a TANDEM_VARIANT_KEY_* one), or empty."""
    import os

    if not api_key_env or not API_KEY_ENV_RE.match(api_key_env):
        return ""
    return os.environ.get(api_key_env, "")


def variant_endpoint(variant, *, connect_timeout: float | None = None, read_timeout: float | None = None):
    """The variant's endpoint as the sampler and the probes reach it, checked again now: its host is
    still allowed and an admin approved it (client.EndpointError otherwise, not worth a retry)."""
    from . import client

    if variant.awaiting_approval:
        raise client.EndpointError("The variant's endpoint waits for an admin's approval.", transient=False)
    if not endpoint_allowed(variant.base_url):
        raise client.EndpointError("The variant's endpoint host is not in VARIANT_ALLOWED_HOSTS.", transient=False)
    sampling = settings.SAMPLING
    return client.Endpoint(
        base_url=variant.base_url,
        api_key=api_key_of(variant.api_key_env) or "EMPTY",
        connect_timeout=sampling["CONNECT_TIMEOUT"] if connect_timeout is None else connect_timeout,
        read_timeout=sampling["READ_TIMEOUT"] if read_timeout is None else read_timeout,
    )
