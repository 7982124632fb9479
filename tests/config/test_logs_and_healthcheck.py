"""What the web process writes and how the orchestrator probes it: an invitation's token (its URL)
never reaches a log, gunicorn's access log nor Django's; the compose healthcheck of `web` passes
against a server whose ALLOWED_HOSTS is a real host name."""

import os
import subprocess
import sys

import httpx
import pytest
import yaml

from bench.processes import ROOT, free_port

from ..conftest import wait_for

TOKEN = "zq-invitation-token-in-a-url-0123456789"


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TANDEM_TEST_DATABASE_NAME",)}
    env.update(DJANGO_SETTINGS_MODULE="config.settings.test", PYTHONUNBUFFERED="1", **extra)
    return env


def _serve(command: list[str], port: int, log_path, host: str = "127.0.0.1", **env) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=ROOT, env=_env(**env), stdout=log_path.open("w"),
                               stderr=subprocess.STDOUT, start_new_session=True)

    def answers():
        try:
            return httpx.get(f"http://127.0.0.1:{port}/login/", headers={"Host": host}, timeout=2).status_code == 200
        except httpx.HTTPError:
            assert process.poll() is None, log_path.read_text()[-2000:]
            return False

    wait_for(answers, timeout=60, message="the server")
    return process


def _visit_invitation(port: int) -> None:
    # The link itself, its Referer on the next request, and a query that quotes it.
    httpx.get(f"http://127.0.0.1:{port}/invite/{TOKEN}/", timeout=10)
    httpx.get(f"http://127.0.0.1:{port}/login/?next=/invite/{TOKEN}/", timeout=10,
              headers={"Referer": f"http://127.0.0.1:{port}/invite/{TOKEN}/"})


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("server", ["gunicorn", "runserver"])
def test_an_invitation_token_never_reaches_a_log(server, tmp_path):
    from django.db import connection

    port = free_port()
    log = tmp_path / f"{server}.log"
    if server == "gunicorn":  # as the Dockerfile runs it, access log on
        command = [str(ROOT / ".venv" / "bin" / "gunicorn"), "config.wsgi", "-c", "config/gunicorn.py", "--bind",
                   f"127.0.0.1:{port}", "--workers", "1", "--access-logfile", "-"]
    else:  # as make run runs it
        command = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    process = _serve(command, port, log, TANDEM_TEST_DATABASE_NAME=str(connection.settings_dict["NAME"]))
    try:
        _visit_invitation(port)
    finally:
        _stop(process)
    written = log.read_text()
    assert "/invite/[redacted]/" in written, written[-2000:]  # the requests were logged …
    assert TOKEN not in written  # … without the secret


@pytest.mark.django_db(transaction=True)
def test_the_compose_healthcheck_of_web_passes_for_a_real_host_name(tmp_path):
    from django.db import connection

    healthcheck = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]["healthcheck"]["test"]
    assert healthcheck[:4] == ["CMD", "python", "-m", "config.healthcheck"]
    port = free_port()
    served = {"ALLOWED_HOSTS": "tandem.example.org", "TANDEM_TEST_DATABASE_NAME": str(connection.settings_dict["NAME"])}
    process = _serve([str(ROOT / ".venv" / "bin" / "gunicorn"), "config.wsgi", "-c", "config/gunicorn.py",
                      "--bind", f"127.0.0.1:{port}", "--workers", "1"], port, tmp_path / "web.log",
                     host="tandem.example.org", **served)

    def probe(command):
        return subprocess.run(command, cwd=ROOT, env=_env(ALLOWED_HOSTS="tandem.example.org"), capture_output=True,
                              text=True, timeout=60)

    try:
        checked = probe([sys.executable, "-m", "config.healthcheck", "--port", str(port)])
        # No variant here: /health says 503 (unavailable), and the web process answered it.
        assert checked.returncode == 0 and "/health answered 503 for Host tandem.example.org" in checked.stdout
        # The check it replaces asked for 127.0.0.1, which ALLOWED_HOSTS refuses: it could never pass.
        old = probe([sys.executable, "-c", "import urllib.request; urllib.request.urlopen("
                     f"'http://127.0.0.1:{port}/health?format=json', timeout=5)"])
        assert old.returncode != 0 and "400" in old.stderr
    finally:
        _stop(process)
    down = probe([sys.executable, "-m", "config.healthcheck", "--port", str(port), "--timeout", "2"])
    assert down.returncode == 1 and "did not answer" in down.stderr
