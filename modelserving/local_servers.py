"""`transformers serve` processes that Tandem starts itself for new policy variants (embedded
set-up). Each runs detached in its own session, logs under var/logs/, and is recorded in
`LocalServer`, so it can be shown and stopped."""

from __future__ import annotations

import os
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_server_start(*, model_dir: Path | str, name: str, timeout: float = 120.0) -> LocalServer:
    """Start `transformers serve` on a free loopback port and wait until it lists its model."""
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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stopped_at = timezone.now()
            server.save(update_fields=["stopped_at"])
            tail = log_path.read_text(errors="replace")[-1500:]
            raise ValidationError(f"The model server for {model_dir} exited at start: {tail}")
        if client.probe(server.base_url, timeout=2).get("ok"):
            return server
        time.sleep(0.5)
    local_server_stop(server=server)
    raise ValidationError(f"The model server for {model_dir} did not answer within {timeout:.0f} s.")


def local_server_stop(*, server: LocalServer) -> LocalServer:
    try:
        os.killpg(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    server.stopped_at = server.stopped_at or timezone.now()
    server.save(update_fields=["stopped_at"])
    return server
