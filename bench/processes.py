"""Real processes the tests and the benchmarks run: model servers on loopback, Celery workers, gunicorn,
Redis and PostgreSQL of their own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from modelserving.engines import TRANSFORMERS, VLLM_VENV, Engine, installed_vllm, serve_command, serve_environment

ROOT = Path(__file__).resolve().parents[1]
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
    """A model server for one checkpoint folder on 127.0.0.1: `transformers serve`, or vLLM's CPU
    build from .venv-vllm (``engine="vllm"``, where `make vllm` installed it)."""

    def __init__(self, model_dir: Path, port: int | None = None, threads: int = 1, engine: str = TRANSFORMERS,
                 kv_cache_gib: float = 1.0):
        self.model_dir = Path(model_dir).resolve()
        self.port = port or free_port()
        self.threads = threads
        self.engine = Engine(engine, engine)
        if self.engine.is_vllm and installed_vllm() is None:
            raise RuntimeError(f"vLLM is not installed in {VLLM_VENV} (make vllm)")
        self.kv_cache_gib = kv_cache_gib
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model_name(self) -> str:
        return str(self.model_dir)

    def start(self) -> ModelServer:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"model-server-{self.engine.name}-{self.port}.log"
        self.process = subprocess.Popen(
            serve_command(self.engine, self.model_dir, port=self.port),
            env=serve_environment(self.engine, threads=self.threads, kv_cache_gib=self.kv_cache_gib),
            stdout=open(self.log_path, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 120) -> ModelServer:
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

    def kill(self) -> None:
        """SIGKILL to the whole process group (vLLM's engine and workers too): a crash, not a stop."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


class CeleryWorker:
    """`celery worker` in its own process group, on the test database and the test broker (or the
    broker in ``env``), optionally with the embedded beat (periodic tasks)."""

    def __init__(self, env: dict, concurrency: int = 2, *, queues: str = "sampling,exports,gpu", beat: bool = False,
                 name: str = "celery-worker", purge: bool = True, pool: str = "prefork"):
        self.env = env
        self.concurrency, self.pool = concurrency, pool
        self.queues, self.beat, self.name, self.purge = queues, beat, name, purge
        self.process: subprocess.Popen | None = None
        self.log_path = LOG_DIR / f"{name}.log"

    def _celery(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "config", *args]

    def start(self, timeout: float = 60) -> CeleryWorker:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        if self.purge:
            subprocess.run(self._celery("purge", "-f", "-Q", self.queues), env=self.env, cwd=ROOT,
                           check=True, capture_output=True, timeout=60)
        beat = ["--beat", "--schedule", str(LOG_DIR / f"{self.name}-beat-schedule")] if self.beat else []
        self.process = subprocess.Popen(
            self._celery("worker", "-Q", self.queues, "--concurrency", str(self.concurrency),
                         "--pool", self.pool, "--without-gossip", "--without-mingle", "--loglevel", "INFO",
                         "--hostname", f"{self.name}-{os.getpid()}@%h", *beat),
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


def _wait_port(port: int, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{log_path.name}: exited:\n" + log_path.read_text(errors="replace")[-3000:])
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s:\n" + log_path.read_text(errors="replace")[-3000:])


class RedisServer:
    """A private `redis-server` on a free port (never the shared one): it may be stopped and started
    again on the same port, as an outage would."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = LOG_DIR / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no"], stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port(self.port, self.process, self.log_path, 30)
        return self

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, timeout=10)


class WebServer:
    """gunicorn serving Tandem on 127.0.0.1, as production does (behind its proxy)."""

    def __init__(self, env: dict, workers: int = 2, threads: int = 8, name: str = "gunicorn"):
        self.env, self.workers, self.threads = env, workers, threads
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = LOG_DIR / f"{name}-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> WebServer:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers), "--threads", str(self.threads), "--timeout", "60",
             "--graceful-timeout", "5"],
            env=self.env, cwd=ROOT, stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        _wait_port(self.port, self.process, self.log_path, timeout)
        deadline = time.monotonic() + timeout
        while len(self.worker_pids()) < self.workers and time.monotonic() < deadline:
            time.sleep(0.1)
        return self

    def worker_pids(self) -> list[int]:
        import psutil

        return sorted(child.pid for child in psutil.Process(self.process.pid).children())

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, timeout=15)


class PostgresCluster:
    """A private PostgreSQL cluster in a temporary folder on a free port (initdb + pg_ctl), to be
    restarted at will: the shared server is never touched. initdb refuses root, so as root the
    cluster belongs to the `postgres` user."""

    def __init__(self, root: Path, port: int | None = None):
        self.root, self.port = Path(root), port or free_port()
        self.data = self.root / "data"
        self.log_path = LOG_DIR / f"postgres-{self.port}.log"
        self.bin = Path(os.environ.get("TANDEM_PG_BIN", _pg_bin()))

    def _as_owner(self, *command: str) -> list[str]:
        return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + list(command)

    def _run(self, *command: str, timeout: float = 120) -> None:
        subprocess.run(self._as_owner(*command), check=True, capture_output=True, timeout=timeout)

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> PostgresCluster:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            import shutil

            shutil.chown(self.root, "postgres", "postgres")
            self.log_path.touch()
            shutil.chown(self.log_path, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8")
        return self

    def start(self) -> PostgresCluster:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-o", options,
                  "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def create_database(self, name: str) -> None:
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)


def _pg_bin() -> str:
    import glob

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("No PostgreSQL server binaries (initdb) under /usr/lib/postgresql/*/bin: install the "
                           "postgresql package, or set TANDEM_PG_BIN.")
    return str(Path(found[-1]).parent)
