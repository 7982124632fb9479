"""Production: every secret from the environment, nothing defaulted that matters.

Refuses to start without SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL, CACHE_URL and
ANNOTATOR_PSEUDONYM_KEY; with a SECRET_KEY under 50 characters or an ANNOTATOR_PSEUDONYM_KEY under
32 (its pseudonyms of small integer ids are reversible with a weak key), or either with fewer than 5
distinct characters; and with either key appearing anywhere in the repository (the .env.example
placeholder, the development and test keys, a key pasted into the docs).
"""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import BASE_DIR, env
from .secret_checks import found_in_repository, weakness

REQUIRED = ("SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "CACHE_URL", "ANNOTATOR_PSEUDONYM_KEY")
MIN_SECRET_KEY_LENGTH = 50
MIN_PSEUDONYM_KEY_LENGTH = 32
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
_MAKE_ONE = "(python -c 'import secrets; print(secrets.token_urlsafe(64))')"
if _secret in (PLACEHOLDER_SECRET_KEY, _example_secret()):
    raise ImproperlyConfigured(f"SECRET_KEY is the placeholder from .env.example: set a random one {_MAKE_ONE}.")
_keys = {"SECRET_KEY": (_secret, MIN_SECRET_KEY_LENGTH),
         "ANNOTATOR_PSEUDONYM_KEY": (env.str("ANNOTATOR_PSEUDONYM_KEY"), MIN_PSEUDONYM_KEY_LENGTH)}
for _name, (_value, _length) in _keys.items():
    _why = weakness(_name, _value, min_length=_length)
    if _why:
        raise ImproperlyConfigured(f"{_why} Set a random one {_MAKE_ONE}.")
for _name, _where in found_in_repository({name: value for name, (value, _) in _keys.items()}, BASE_DIR).items():
    raise ImproperlyConfigured(f"{_name} appears in the repository ({_where}): anyone can read it. "
                               f"Set a random one {_MAKE_ONE}.")

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
# The API's schema and docs for people who are logged in (or hold a token), not for anyone.
API_SCHEMA_PUBLIC = False
# A web process never spawns model servers in production: operators run vLLM and give its URL.
POLICY_SERVING = env.str("POLICY_SERVING", default="external")
# check --deploy asks for both; they are the operator's choice here, not a default.
SILENCED_SYSTEM_CHECKS = [
    *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
    *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
]
