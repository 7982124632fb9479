"""Production: every secret from the environment, nothing defaulted that matters.

Refuses to start without SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL, CACHE_URL and
ANNOTATOR_PSEUDONYM_KEY, and with a SECRET_KEY that is short or still the .env.example placeholder.
"""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import BASE_DIR, env

REQUIRED = ("SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "CACHE_URL", "ANNOTATOR_PSEUDONYM_KEY")
MIN_SECRET_KEY_LENGTH = 50
# The value .env.example ships with: a copy of the example must not run as it is.
PLACEHOLDER_SECRET_KEY = "change-me-to-a-long-random-string-of-at-least-fifty-characters-0123456789"

_missing = [name for name in REQUIRED if not env.str(name, default="")]
if _missing:
    raise ImproperlyConfigured(
        "Production settings need these environment variables: " + ", ".join(_missing)
    )


def _example_secret() -> str:
    try:
        for line in (BASE_DIR / ".env.example").read_text().splitlines():
            if line.startswith("SECRET_KEY="):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return PLACEHOLDER_SECRET_KEY


_secret = env.str("SECRET_KEY")
if _secret in (PLACEHOLDER_SECRET_KEY, _example_secret()):
    raise ImproperlyConfigured("SECRET_KEY is the placeholder from .env.example: set a random one "
                               "(python -c 'import secrets; print(secrets.token_urlsafe(64))').")
if len(_secret) < MIN_SECRET_KEY_LENGTH:
    raise ImproperlyConfigured(f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters long.")

DEBUG = False
SECRET_KEY = env.str("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
DATABASES = {"default": env.db_url("DATABASE_URL")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# TLS ends at the proxy in front of gunicorn.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# /health is probed over plain HTTP by the orchestrator inside the private network.
SECURE_REDIRECT_EXEMPT = [r"^health$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
# Subdomains and the browsers' preload list bind every host under the domain for a year or more:
# an operator opts in knowingly.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# A web process never spawns model servers in production: operators run vLLM and give its URL.
POLICY_SERVING = env.str("POLICY_SERVING", default="external")
# check --deploy asks for both; they are the operator's choice here, not a default.
SILENCED_SYSTEM_CHECKS = [
    *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
    *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
]
