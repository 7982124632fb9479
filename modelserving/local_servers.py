"""Local model servers: the processes that Tandem starts itself for new policy variants (embedded
set-up), with this machine's engine (vLLM's CPU build where it runs, else `transformers serve`:
modelserving/engines.py). Each runs detached in its own session, logs under var/logs/, and is
recorded in `LocalServer`, so it can be shown and stopped; `manage.py local_servers keep` stops
them with the stack and starts them again, on their ports, for the variants still active.

A server takes seconds to minutes to load its model. Nothing waits for it holding a web request
or a worker slot: `local_server_launch` starts the process and returns, and the Celery task
`local_server_activate` looks once whether it answers, then asks to be run again a moment later;
the variant it serves turns active when it does."""

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
from .engines import Engine, local_engine, serve_command, serve_environment
from .models import LocalServer

NAME_RE = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def engine() -> Engine:
    """This machine's engine for local model servers (LOCAL_MODEL_ENGINE, VLLM_VENV)."""
    return local_engine(settings.LOCAL_MODEL_ENGINE, venv=settings.VLLM_VENV)


def server_command(model_dir: Path, *, port: int, chosen: Engine | None = None) -> tuple[list[str], dict]:
    """The command line and environment of a local model server for ``model_dir`` on ``port``."""
    chosen = chosen or engine()
    command = serve_command(chosen, model_dir, port=port, venv=settings.VLLM_VENV,
                            max_model_len=settings.VLLM_MAX_MODEL_LEN)
    return command, serve_environment(chosen, threads=settings.LOCAL_SERVE_THREADS,
                                      kv_cache_gib=settings.VLLM_KV_CACHE_GIB)


def local_server_launch(*, model_dir: Path | str, name: str) -> LocalServer:
    """Start a model server on a free loopback port and return at once (see local_server_activate
    for when it answers). The name is checked first: it is part of a file path."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationError({"name": "A name of 1 to 64 letters, digits, - or _."})
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ValidationError(f"{model_dir} is not a model folder (no config.json).")
    port = _free_port()
    log_dir = Path(settings.VAR_DIR) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"serve-{name}-{port}.log"
    return LocalServer.objects.create(model_dir=str(model_dir), port=port, pid=_start(model_dir, port, log_path),
                                      log_path=str(log_path))


def _start(model_dir: Path, port: int, log_path: Path) -> int:
    command, env = server_command(model_dir, port=port)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                   start_new_session=True)
    return process.pid


def _exited(pid: int) -> bool:
    """Whether the process is gone (or a zombie its parent has not reaped: it exited all the same)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def local_server_look(*, server: LocalServer) -> str:
    """One look, no waiting: "ready" (it lists its models), "exited" or "starting"."""
    if _exited(server.pid):
        return "exited"
    return "ready" if client.probe(client.Endpoint(base_url=server.base_url), timeout=2).get("ok") else "starting"


def local_server_activate(*, server_id: int, deadline: float) -> str:
    """Look once at a launched server: activate its variant when it answers; when it exited, or is
    still silent at ``deadline`` (epoch seconds), stop it and say why in the variant's notes.
    Returns "active", "failed", "starting" (look again later) or "gone" (stopped meanwhile)."""
    from .models import PolicyVariant

    server = LocalServer.objects.filter(pk=server_id, stopped_at__isnull=True).first()
    if server is None:
        return "gone"
    look = local_server_look(server=server)
    if look == "ready":
        if server.variant_id:
            PolicyVariant.objects.filter(pk=server.variant_id).update(is_active=True)
        return "active"
    if look == "starting" and time.time() < deadline:
        return "starting"
    if look == "exited":
        tail = Path(server.log_path).read_text(errors="replace")[-1500:] if Path(server.log_path).is_file() else ""
        why = f"The model server for {server.model_dir} exited at start: {tail}"
    else:
        why = f"The model server for {server.model_dir} did not answer in time; it was stopped."
    local_server_stop(server=server)
    if server.variant_id:
        variant = PolicyVariant.objects.get(pk=server.variant_id)
        PolicyVariant.objects.filter(pk=variant.pk).update(is_active=False, notes=f"{variant.notes}\n{why}".strip())
    return "failed"


def local_server_stop(*, server: LocalServer) -> LocalServer:
    try:
        os.killpg(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    server.stopped_at = server.stopped_at or timezone.now()
    server.save(update_fields=["stopped_at"])
    return server


# --- With the stack: stopped when it stops, back when it starts ------------------------------


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def local_servers_stop_all() -> list[LocalServer]:
    """Stop every local server still running (the stack is stopping). Their variants stay active:
    local_servers_restore starts them again with the stack."""
    stopped = []
    for server in LocalServer.objects.filter(stopped_at__isnull=True):
        stopped.append(local_server_stop(server=server))
    return stopped


def local_servers_restore() -> list[str]:
    """For each active variant whose local server is not running (stopped with the stack, or dead),
    start the server again, on its port when that is free (the variant's URL then stays; else on a
    free one, and the variant's URL follows). Returns one line per variant for the log."""
    from .models import PolicyVariant

    lines = []
    servers = LocalServer.objects.filter(variant__is_active=True).select_related("variant")
    for server in servers:
        if server.stopped_at is None and not _exited(server.pid):
            continue
        variant = server.variant
        model_dir = Path(server.model_dir)
        if not (model_dir / "config.json").is_file():
            lines.append(f"variant {variant.name}: not restarted, {model_dir} is no model folder any more")
            continue
        port = server.port if _port_free(server.port) else _free_port()
        log_path = Path(server.log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        pid = _start(model_dir, port, log_path)
        LocalServer.objects.filter(pk=server.pk).update(pid=pid, port=port, stopped_at=None, started_at=timezone.now())
        if port != server.port:
            PolicyVariant.objects.filter(pk=variant.pk).update(base_url=f"http://127.0.0.1:{port}/v1")
        lines.append(f"variant {variant.name}: {model_dir} served again on :{port} (pid {pid})")
    return lines
