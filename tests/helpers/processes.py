"""Real processes the tests run: `transformers serve` on loopback and a Celery worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from modelserving.local_models import serve_command, serve_environment

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "var" / "test-logs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen, timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=5)


class ModelServer:
    """`transformers serve` for one checkpoint folder on 127.0.0.1."""

    def __init__(self, model_dir: Path, port: int | None = None, threads: int = 1):
        self.model_dir = Path(model_dir).resolve()
        self.port = port or free_port()
        self.threads = threads
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model_name(self) -> str:
        return str(self.model_dir)

    def start(self) -> "ModelServer":
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"model-server-{self.port}.log"
        self.process = subprocess.Popen(
            serve_command(self.model_dir, port=self.port),
            env=serve_environment(self.threads),
            stdout=open(self.log_path, "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 120) -> "ModelServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"model server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.base_url + "/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"model server on {self.port} not ready after {timeout} s")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


class CeleryWorker:
    """`celery worker` in its own process group, on the test database and the test broker."""

    def __init__(self, env: dict, concurrency: int = 2):
        self.env = env
        self.concurrency = concurrency
        self.process: subprocess.Popen | None = None
        self.log_path = LOG_DIR / "celery-worker.log"

    def _celery(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "config", *args]

    def start(self, timeout: float = 60) -> "CeleryWorker":
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(self._celery("purge", "-f", "-Q", "sampling,gpu"), env=self.env, cwd=ROOT,
                       check=True, capture_output=True, timeout=60)
        self.process = subprocess.Popen(
            self._celery("worker", "-Q", "sampling,gpu", "--concurrency", str(self.concurrency),
                         "--pool", "prefork", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
                         "--hostname", f"tests-{os.getpid()}@%h"),
            env=self.env, cwd=ROOT, stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("celery worker exited:\n" + self.log_path.read_text()[-3000:])
            if " ready." in self.log_path.read_text(errors="replace"):
                return self
            time.sleep(0.2)
        raise RuntimeError("celery worker not ready:\n" + self.log_path.read_text()[-3000:])

    def child_pids(self) -> list[int]:
        import psutil

        return [child.pid for child in psutil.Process(self.process.pid).children()]

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, timeout=30)


class SilentServer:
    """A TCP listener that accepts connections and never answers: a hung endpoint."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.sock.settimeout(0.05)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def drain(self) -> int:
        """Accept what is waiting; returns how many connections arrived so far."""
        while True:
            try:
                connection, _ = self.sock.accept()
            except (TimeoutError, BlockingIOError, OSError):
                return len(self.accepted)
            self.accepted.append(connection)

    def close(self) -> None:
        for connection in self.accepted:
            connection.close()
        self.sock.close()
