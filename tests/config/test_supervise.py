"""The embedded stack keeps running when one of its processes dies (scripts/supervise.py under
honcho, as `make run` starts it): the dead one is started again with a back-off, the others keep
serving, and the stack stops only when asked."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from bench.processes import free_port

from ..conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
HONCHO = Path(sys.executable).with_name("honcho")
SUPERVISE = f"{sys.executable} {ROOT / 'scripts' / 'supervise.py'}"


def _start(tmp_path: Path, procfile: str) -> tuple[subprocess.Popen, Path]:
    (tmp_path / "Procfile").write_text(procfile)
    log = tmp_path / "honcho.log"
    process = subprocess.Popen([str(HONCHO), "start", "-f", str(tmp_path / "Procfile"), "-d", str(tmp_path)],
                               stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    return process, log


def _supervised_child(name: str, honcho: subprocess.Popen) -> psutil.Process | None:
    """The command a supervisor named ``name`` runs now."""
    for process in psutil.Process(honcho.pid).children(recursive=True):
        try:
            command = process.cmdline()
            if command[1:3] == [str(ROOT / "scripts" / "supervise.py"), name]:  # not the shell around it
                children = process.children()
                return children[0] if children else None
        except psutil.NoSuchProcess:
            continue
    return None


def _stop(honcho: subprocess.Popen) -> None:
    if honcho.poll() is None:
        os.killpg(honcho.pid, signal.SIGTERM)
        try:
            honcho.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait(5)


def test_a_killed_process_comes_back_and_the_others_keep_serving(tmp_path):
    port = free_port()
    honcho, log = _start(tmp_path, (
        f"web: {SUPERVISE} web -- {sys.executable} -m http.server {port} --bind 127.0.0.1\n"
        f"worker: {SUPERVISE} worker --backoff 0.5 -- {sys.executable} -c 'import time; time.sleep(600)'\n"))
    try:
        wait_for(lambda: _port_answers(port), timeout=30, message="the web process")
        first = wait_for(lambda: _supervised_child("worker", honcho), timeout=30, message="the worker")
        first.send_signal(signal.SIGKILL)  # kill -9, as an out-of-memory killer would
        second = wait_for(lambda: (child := _supervised_child("worker", honcho)) and child.pid != first.pid and child,
                          timeout=10, message="the worker started again")
        assert second.is_running() and honcho.poll() is None
        assert _port_answers(port), "the web process kept serving"
        assert "supervise[worker]: killed by SIGKILL after" in log.read_text()
        assert "starting it again in 0.5 s" in log.read_text()
    finally:
        _stop(honcho)
    # Asked to stop, everything stops: honcho, the supervisors and what they ran.
    assert honcho.returncode is not None
    assert not _port_answers(port)
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])
                 or f"http.server {port}" in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []


def test_a_process_that_keeps_dying_is_restarted_with_a_growing_back_off(tmp_path):
    honcho, log = _start(tmp_path, (
        f"flaky: {SUPERVISE} flaky --backoff 0.2 --max-backoff 0.8 -- {sys.executable} -c 'raise SystemExit(3)'\n"
        f"steady: {SUPERVISE} steady -- {sys.executable} -c 'import time; time.sleep(600)'\n"))
    try:
        wait_for(lambda: log.read_text().count("supervise[flaky]: exited with code 3") >= 4, timeout=30,
                 message="four restarts")
        delays = [line.rsplit("again in ", 1)[1].split(" s")[0] for line in log.read_text().splitlines()
                  if "supervise[flaky]" in line][:4]
        assert delays == ["0.2", "0.4", "0.8", "0.8"]
        assert honcho.poll() is None and _supervised_child("steady", honcho) is not None
    finally:
        _stop(honcho)


def _port_answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
