"""Running Tandem under its production settings in a child process, with keys made afresh for each
run (production refuses a key written anywhere in the repository, this file included)."""

import os
import secrets
import subprocess
import sys

from bench.processes import ROOT

PRODUCTION_ENV = {
    "SECRET_KEY": secrets.token_urlsafe(48),
    "ALLOWED_HOSTS": "tandem.example.org",
    "DATABASE_URL": "postgres://tandem:tandem@127.0.0.1:5432/tandem",
    "CACHE_URL": "redis://127.0.0.1:6379/15",
    "ANNOTATOR_PSEUDONYM_KEY": secrets.token_urlsafe(32),
}


def run_under_production(args, settings_module="config.settings.production", **env):
    clean = {k: v for k, v in os.environ.items()
             if k not in PRODUCTION_ENV and k not in ("DJANGO_ALLOW_ASYNC_UNSAFE", "DJANGO_SETTINGS_MODULE",
                                                      "SECURE_HSTS_PRELOAD", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
                                                      "POLICY_SERVING")}
    if settings_module:
        clean["DJANGO_SETTINGS_MODULE"] = settings_module
    clean.update(env)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=120)
