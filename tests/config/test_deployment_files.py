"""The files that describe how Tandem runs: docker-compose.yml, Procfile, static assets."""

import os
import re

import pytest
import yaml

from bench.processes import ROOT


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_production_services():
    services = compose()["services"]
    assert {"postgres", "redis", "web", "worker", "gpu-worker", "vllm-cool", "vllm-warm"} <= set(services)
    assert "-Q" in services["worker"]["command"] and "sampling" in services["worker"]["command"]
    assert "gpu" in services["gpu-worker"]["command"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "config", "beat"]
    assert services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"


def test_compose_web_serves_the_exports_the_export_worker_writes():
    services = compose()["services"]
    assert "exports:/app/var/exports" in services["web"]["volumes"]
    assert "exports:/app/var/exports" in services["export-worker"]["volumes"]
    assert "exports" in compose()["volumes"]


def queues_of(command: str) -> set[str]:
    found = re.search(r"-Q\s+(\S+)", command)
    return set(found.group(1).split(",")) if found else set()


def routed_queues() -> set[str]:
    from django.conf import settings

    return {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}


def test_every_routed_queue_has_a_worker_in_compose_and_in_the_procfile():
    # A queue no process consumes is work that never runs (exports, once they had their own queue).
    assert routed_queues() == {"sampling", "exports", "gpu"}
    assert queues_of(" ".join(compose()["services"]["export-worker"]["command"])) == {"exports"}
    composed = set().union(*(queues_of(" ".join(service.get("command") or []))
                             for service in compose()["services"].values() if isinstance(service.get("command"), list)))
    assert routed_queues() <= composed
    assert routed_queues() <= set().union(*(queues_of(line) for line in procfile().values()))


def test_compose_vllm_services_name_their_served_model():
    services = compose()["services"]
    for name in ("vllm-cool", "vllm-warm"):
        flags = " ".join(services[name]["command"])
        assert re.search(r"--served-model-name=\S+", flags)
        assert "ports" not in services[name], "vLLM stays on the internal network"


def test_compose_app_services_run_production_settings_with_required_secrets():
    env = compose()["x-app-env"]
    assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
    for name in ("SECRET_KEY", "ALLOWED_HOSTS"):
        assert ":?" in env[name], f"{name} must be required, not defaulted"


def procfile() -> dict[str, str]:
    return dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines()
                if line.strip() and not line.startswith("#"))


def test_procfile_runs_web_workers_beat_and_one_model_server_per_variant():
    entries = procfile()
    assert set(entries) == {"web", "worker", "exporter", "trainer", "model_cool", "model_warm", "servers"}
    # Sampling waits on the model servers: threads, two per pair in flight, so vLLM batches them.
    assert "--pool threads --concurrency ${SAMPLING_THREADS:-32}" in entries["worker"]
    assert "manage.py local_servers keep" in entries["servers"]
    # Sampling never waits behind a training run; the heartbeat check runs from the embedded beat.
    assert "-Q sampling " in entries["worker"] and "--beat" in entries["worker"]
    assert "-Q gpu --concurrency 1" in entries["trainer"]
    assert "-Q exports " in entries["exporter"]  # a long export never waits behind sampling
    # honcho stops the whole stack when one process exits: each runs under the restarting supervisor.
    for name, command in entries.items():
        assert f"scripts/supervise.py {name} -- " in command, name


@pytest.mark.django_db
def test_htmx_is_served_locally_and_pages_carry_a_strict_csp(client):
    response = client.get("/login/")
    html = response.content.decode()
    assert re.search(r'<script src="/static/vendor/htmx\.min\.js"', html)
    assert "https://" not in re.sub(r'href="https?://[^"]*"', "", html).split("<body")[0], "no CDN"
    assert '"allowEval": false' in html and '"allowScriptTags": false' in html
    assert "<script>" not in html
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert client.get("/static/vendor/htmx.min.js").status_code == 200


def test_gunicorn_runs_threaded_workers_one_process_per_core(monkeypatch):
    """The worker class measured best on 2 cores (docs/performance.md), set where the Dockerfile's
    command reads it, not overridden there."""
    import runpy

    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.delenv("GUNICORN_THREADS", raising=False)
    conf = runpy.run_path(str(ROOT / "config" / "gunicorn.py"))
    assert conf["worker_class"] == "gthread" and conf["threads"] == 4
    assert conf["workers"] == (os.cpu_count() or 1) and conf["limit_request_line"] == 8190
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert runpy.run_path(str(ROOT / "config" / "gunicorn.py"))["workers"] == 3
    command = (ROOT / "Dockerfile").read_text()
    assert '"-c", "config/gunicorn.py"' in command and "--workers" not in command and "--worker-class" not in command
