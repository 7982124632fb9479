import os
import subprocess
import sys

import pytest
from django.conf import settings

from ..helpers.processes import ROOT

PRODUCTION_ENV = {
    "SECRET_KEY": "x" * 20 + "production-secret-with-enough-entropy-0123456789",
    "ALLOWED_HOSTS": "tandem.example.org",
    "DATABASE_URL": "postgres://tandem:tandem@127.0.0.1:5432/tandem",
}


def _run(args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV and k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    clean.update(DJANGO_SETTINGS_MODULE="config.settings.production", **env)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("missing", sorted(PRODUCTION_ENV))
def test_production_refuses_to_start_without_each_secret(missing):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    result = _run(["-c", "import django; django.setup()"], **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and missing in result.stderr


def test_production_check_deploy_reports_nothing():
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "DEBUG"], **PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_celery_speaks_json_only_acks_late_and_prefetches_one():
    from config.celery import app

    conf = app.conf
    assert conf.task_serializer == "json" and conf.accept_content == ["json"] and conf.result_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert {q.name for q in conf.task_queues} == {"sampling", "exports", "gpu"}
    assert app.amqp.router.route({}, "modelserving.generation_sample")["queue"].name == "sampling"
    # A long export has its own queue and worker; the quick recovery sweeps stay with sampling.
    assert app.amqp.router.route({}, "annotation.export_run")["queue"].name == "exports"
    assert app.amqp.router.route({}, "annotation.exports_recover")["queue"].name == "sampling"


def test_time_limits_stay_below_the_visibility_timeout():
    assert settings.CELERY_TASK_SOFT_TIME_LIMIT < settings.CELERY_TASK_TIME_LIMIT
    assert settings.CELERY_TASK_TIME_LIMIT < settings.CELERY_BROKER_VISIBILITY_TIMEOUT


def test_embedded_defaults_with_no_environment():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'], s.CELERY_BROKER_URL, "
            "s.CELERY_BROKER_TRANSPORT_OPTIONS['data_folder_in'])")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    engine, name, broker, folder = result.stdout.split()
    assert engine == "django.db.backends.sqlite3" and name.startswith(str(ROOT / "var"))
    assert broker == "filesystem://" and folder.startswith(str(ROOT / "var"))
