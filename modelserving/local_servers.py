"""`transformers serve` processes that Tandem starts itself for new policy variants (embedded
set-up). Each runs detached in its own session, logs under var/logs/, and is recorded in
`LocalServer`, so it can be shown and stopped."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from . import client
from .local_models import serve_command, serve_environment
from .models import LocalServer

NAME_RE = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _check_name(name: str) -> None:
    """A variant's name (a slug): it is part of the log file's path, so checked before anything starts."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationError({"name": "A name of 1 to 64 letters, digits, - or _."})


def local_server_start(*, model_dir: Path | str, name: str, timeout: float = 120.0, wait: bool = True) -> LocalServer:
    """Start `transformers serve` on a free loopback port; with ``wait``, until it lists its model
    (``local_server_wait``). A web request does not wait: a task activates its variant once it answers."""
    _check_name(name)
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ValidationError(f"{model_dir} is not a model folder (no config.json).")
    port = _free_port()
    log_dir = Path(settings.VAR_DIR) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"serve-{name}-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(serve_command(model_dir, port=port), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=serve_environment(settings.LOCAL_SERVE_THREADS),
                                   start_new_session=True)
    server = LocalServer.objects.create(model_dir=str(model_dir), port=port, pid=process.pid, log_path=str(log_path))
    if wait:
        local_server_wait(server=server, timeout=timeout, exited=lambda: process.poll() is not None)
    return server


def _exited(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a child of this process that exited and was not reaped yet
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False


def local_server_wait(*, server: LocalServer, timeout: float = 120.0, exited=None) -> LocalServer:
    """Until the server lists its model; ValidationError (and the server stopped) when it exits or
    does not answer within ``timeout`` seconds."""
    exited = exited or (lambda: _exited(server.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if exited():
            server.stopped_at = timezone.now()
            server.save(update_fields=["stopped_at"])
            tail = Path(server.log_path).read_text(errors="replace")[-1500:]
            raise ValidationError(f"The model server for {server.model_dir} exited at start: {tail}")
        if client.probe(server.base_url, timeout=2).get("ok"):
            return server
        time.sleep(0.5)
    local_server_stop(server=server)
    raise ValidationError(f"The model server for {server.model_dir} did not answer within {timeout:.0f} s.")


def local_server_activate(*, server_id: int, timeout: float = 120.0) -> str:
    """Wait for a started server, then put its variant in front of annotators; a server that never
    answers is stopped and its variant stays inactive, with the reason in its notes. Idempotent."""
    server = LocalServer.objects.select_related("variant").filter(pk=server_id).first()
    if server is None or server.variant is None or server.stopped_at is not None:
        return "gone"
    if server.variant.is_active:
        return "active"
    try:
        local_server_wait(server=server, timeout=timeout)
    except ValidationError as error:
        variant = server.variant
        variant.notes = f"{variant.notes}\nIts local server did not start: {' '.join(error.messages)[:1000]}".strip()
        variant.save(update_fields=["notes", "updated_at"])
        return "failed"
    server.variant.__class__.objects.filter(pk=server.variant_id).update(is_active=True, updated_at=timezone.now())
    return "active"


def local_server_stop(*, server: LocalServer) -> LocalServer:
    try:
        os.killpg(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    server.stopped_at = server.stopped_at or timezone.now()
    server.save(update_fields=["stopped_at"])
    return server
