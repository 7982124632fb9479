import os
import subprocess
import sys

import pytest
from django.conf import settings

from bench.processes import ROOT

from ..helpers.production import PRODUCTION_ENV
from ..helpers.production import run_under_production as _run


@pytest.mark.parametrize("missing", sorted(PRODUCTION_ENV))
def test_production_refuses_to_start_without_each_secret(missing):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    result = _run(["-c", "import django; django.setup()"], **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and missing in result.stderr


def _example_secret() -> str:
    line = next(line for line in (ROOT / ".env.example").read_text().splitlines() if line.startswith("SECRET_KEY="))
    return line.split("=", 1)[1]


# A copy of .env.example deployed as it is must not sign sessions with a key anyone can read.
def test_production_refuses_the_placeholder_secret_key():
    result = _run(["manage.py", "check"], **{**PRODUCTION_ENV, "SECRET_KEY": _example_secret()})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "placeholder" in result.stderr


def test_production_refuses_a_short_secret_key():
    result = _run(["-c", "import django; django.setup()"], **{**PRODUCTION_ENV, "SECRET_KEY": "s" * 49})
    assert result.returncode != 0 and "at least 50 characters" in result.stderr


@pytest.mark.parametrize("name, value, why", [
    ("SECRET_KEY", "local-development-key-not-for-production-0123456789abcdefghijklmnop",
     "SECRET_KEY appears in the repository (config/settings/local.py)"),
    ("SECRET_KEY", "test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
     "SECRET_KEY appears in the repository (config/settings/test.py)"),
    ("SECRET_KEY", "ab" * 40, "SECRET_KEY must have at least 5 distinct characters"),
    ("ANNOTATOR_PSEUDONYM_KEY", "x", "ANNOTATOR_PSEUDONYM_KEY must be at least 32 characters long"),
    ("ANNOTATOR_PSEUDONYM_KEY", " " * 40, "ANNOTATOR_PSEUDONYM_KEY must be at least 32 characters long"),
    ("ANNOTATOR_PSEUDONYM_KEY", "pseudonym-key-kept-across-secret-rotations",  # in this very file
     "ANNOTATOR_PSEUDONYM_KEY appears in the repository (tests/config/test_settings.py)"),
])
def test_production_refuses_a_weak_or_published_key(name, value, why):
    result = _run(["-c", "import django; django.setup()"], **{**PRODUCTION_ENV, name: value})
    assert result.returncode != 0 and why in result.stderr, result.stderr[-500:]


def test_bootstrap_demo_refuses_under_production_settings():
    # It creates accounts whose passwords are in the README.
    result = _run(["manage.py", "bootstrap_demo"], **PRODUCTION_ENV)
    assert result.returncode != 0
    assert "bootstrap_demo creates accounts with published passwords" in result.stderr


def test_production_hsts_subdomains_and_preload_are_opt_in_and_serving_is_external():
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD, "
            "s.POLICY_SERVING, s.SECURE_HSTS_SECONDS > 0)")
    result = _run(["-c", code], **PRODUCTION_ENV)
    assert result.stdout.split() == ["False", "False", "external", "True"], result.stderr
    opted_in = _run(["-c", code], **PRODUCTION_ENV, SECURE_HSTS_PRELOAD="true", SECURE_HSTS_INCLUDE_SUBDOMAINS="true")
    assert opted_in.stdout.split()[:2] == ["True", "True"]


# Production's cache is Redis through django-redis: one client per process thread, kept across
# requests (Django's own backend built a client per operation), with timeouts so that an unreachable
# Redis fails a throttle open in a second.
def test_production_cache_keeps_one_redis_client_with_timeouts():
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "from django.core.cache import cache; "
            "o = s.CACHES['default']['OPTIONS']; "
            "print(s.CACHES['default']['BACKEND'], o['SOCKET_CONNECT_TIMEOUT'], o['SOCKET_TIMEOUT'], "
            "cache.client.get_client(write=True) is cache.client.get_client(write=True))")
    result = _run(["-c", code], **PRODUCTION_ENV)
    assert result.stdout.split() == ["django_redis.cache.RedisCache", "1.0", "1.0", "True"], result.stderr


# A process started without DJANGO_SETTINGS_MODULE (a forgotten variable in a unit file) must not
# come up on the development settings with DEBUG on and a known secret key.
@pytest.mark.parametrize("module", ["config.wsgi", "config.asgi", "config.celery"])
def test_entry_points_default_to_production_settings(module):
    result = _run(["-c", f"import {module}; from django.conf import settings; print(settings.DEBUG)"],
                  settings_module=None)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "SECRET_KEY" in result.stderr


def test_embedded_entry_points_name_the_local_settings():
    assert 'setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")' in (ROOT / "manage.py").read_text()
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("#"):
            continue
        assert line.split(":", 1)[1].strip().startswith("DJANGO_SETTINGS_MODULE=config.settings.local "), line
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCAL := DJANGO_SETTINGS_MODULE=config.settings.local" in makefile and "$(LOCAL) TANDEM_PORT" in makefile


def test_secrets_stay_out_of_images():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".env.*" in ignored


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
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "TANDEM_VAR_DIR")}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'], s.CELERY_BROKER_URL, "
            "s.CELERY_BROKER_TRANSPORT_OPTIONS['data_folder_in'])")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    engine, name, broker, folder = result.stdout.split()
    assert engine == "django.db.backends.sqlite3" and name.startswith(str(ROOT / "var"))
    assert broker == "filesystem://" and folder.startswith(str(ROOT / "var"))



@pytest.mark.parametrize(("name", "value", "why"), [
    ("ANOMALY_ALPHA", "0", "between 0 and 0.5"), ("ANOMALY_ALPHA", "0.7", "between 0 and 0.5"),
    ("ANOMALY_MIN_VOTES", "0", "at least 1 vote"),
])
def test_anomaly_thresholds_out_of_range_are_refused_with_the_reason(name, value, why):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", name: value}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and name in result.stderr and why in result.stderr
