"""Settings shared by every configuration.

The environment is read through config/settings/environment.py only (django-environ), in this
module and its topic modules (serving.py, training.py). With nothing set, Tandem runs on its
embedded defaults: SQLite and kombu's filesystem transport under ``var/``, and the bundled CPU
model. Production sets ``DATABASE_URL``, ``CELERY_BROKER_URL`` and the secrets.
"""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from .environment import BASE_DIR, VAR_DIR, env

DEBUG = False
# manage.py bootstrap_demo (accounts whose passwords the README publishes) runs only where this is on:
# the embedded default and the tests.
DEMO_ACCOUNTS = False
SECRET_KEY = env.str("SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "csp",
    "axes",
    "pgtrigger",
    "core",
    "accounts",
    "annotation",
    "modelserving",
    "training",
    "safety",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # A NUL in a query string is refused 400 (PostgreSQL's text cannot hold one).
    "core.middleware.RefuseNulCharacters",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Logins per client address (THROTTLE_LOGIN), before any password is hashed.
    "core.middleware.LoginRateLimit",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as axes asks: it turns a lockout into its answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.roles",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# PostgreSQL through DATABASE_URL (psycopg2) in production; an SQLite file under var/ otherwise.
DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'tandem.sqlite3'}"
    )
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and model server share the file: wait for locks instead of failing at once,
    # and take the write lock at BEGIN so two writers never deadlock upgrading read locks.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ----------------------------------------------------------------------------------
# Throttle counters and the public /health answer: Redis in production (CACHE_URL, required there)
# through django-redis (one client per thread; Django's own backend built one per operation), with
# short socket timeouts (an unreachable Redis fails a throttle open in a second); this process's
# memory on the embedded default.
_CACHE_URL = env.str("CACHE_URL", default="locmemcache://")
_REDIS_CACHE = _CACHE_URL.split("://", 1)[0] in ("redis", "rediss", "rediscache")
CACHES = {"default": env.cache_url_config(_CACHE_URL,
                                          backend="django_redis.cache.RedisCache" if _REDIS_CACHE else None)}
if _REDIS_CACHE:
    CACHES["default"].setdefault("OPTIONS", {}).update({
        "SOCKET_CONNECT_TIMEOUT": env.float("CACHE_CONNECT_TIMEOUT", default=1.0),
        "SOCKET_TIMEOUT": env.float("CACHE_TIMEOUT", default=1.0),
    })
# Sessions stay in the database (Django's default): a cached session store fails with the cache, and
# a Redis outage must not sign annotators out (tests/faults/test_redis_outage.py).

# --- People ---------------------------------------------------------------------------------
AUTH_USER_MODEL = "auth.User"
# Proxies that append to X-Forwarded-For (0: trust no header); throttles and axes read it alike.
NUM_PROXIES = env.int("NUM_PROXIES", default=0)
# Failed logins (login page, admin's, token endpoint) lock the username from that address out (axes).
AUTHENTICATION_BACKENDS = [
    "accounts.backends.LockoutBackend",
    "accounts.backends.PasswordBackend",  # ModelBackend; a session's user and roles in one query
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=1.0)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "core.throttles.client_ip"
AXES_IPWARE_PROXY_COUNT = NUM_PROXIES
AXES_LOCKOUT_CALLABLE = "accounts.backends.lockout_response"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "accounts:home"
LOGOUT_REDIRECT_URL = "accounts:login"
INVITATION_MAX_AGE_DAYS = env.int("INVITATION_MAX_AGE_DAYS", default=7)
# An API token's lifetime; a new password or a deactivation revokes a user's tokens at once.
API_TOKEN_MAX_AGE_HOURS = env.float("API_TOKEN_MAX_AGE_HOURS", default=24 * 30)

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Security headers -----------------------------------------------------------------------
# No inline script anywhere: htmx and the small JS the pages need are files under static/.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True

# --- API ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # No BasicAuthentication: a password on every request, and no lockout after failed ones.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.backends.TokenAuthentication",  # DRF's; the user and roles in one query
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Counted in the cache; they let requests through when the cache is down (core/throttles.py).
    "DEFAULT_THROTTLE_CLASSES": ["core.throttles.AnonThrottle", "core.throttles.UserThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default="60/min"),
        "user": env.str("THROTTLE_USER", default="1200/min"),
        "login": env.str("THROTTLE_LOGIN", default="20/min"),
    },
    "NUM_PROXIES": NUM_PROXIES,
    "DEFAULT_PAGINATION_CLASS": "core.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # A JSON API: bodies are JSON (null, lists, booleans have no form encoding); the one upload
    # (sources/import) and the token login declare their own parsers.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # A service's refusal becomes HTTP here, for every app (400, 403, 404, 409, 503).
    "EXCEPTION_HANDLER": "core.api.exception_handler",
}
# /api/schema/ and /api/docs/ without a login: the embedded default and the tests only.
API_SCHEMA_PUBLIC = False
SPECTACULAR_SETTINGS = {
    "TITLE": "Tandem API",
    "DESCRIPTION": "Preference data collection for RLHF: policy variants, pairs and generations.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ResponseSideEnum": ["A", "B"],
        "TrainingRunStatusEnum": "training.models.TrainingRun.Status",
        "TrainingRunKindEnum": "training.models.TrainingRun.Kind",
        "CheckpointKindEnum": "training.models.Checkpoint.Kind",
        "ExportJobStatusEnum": "annotation.models.ExportJob.Status",
    },
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "core.schema.add_refusals",
                           "core.schema.forbid_nul_in_query"],
}

# --- Celery ---------------------------------------------------------------------------------
# Redis in production; kombu's filesystem transport under var/ for the one-machine default.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_VISIBILITY_TIMEOUT = env.int("CELERY_BROKER_VISIBILITY_TIMEOUT", default=3600)
if CELERY_BROKER_URL.startswith("filesystem"):
    _queue_dir = VAR_DIR / "broker" / "queue"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(VAR_DIR / "broker" / "processed"),
        # kombu keeps its exchange tables in ./control unless told otherwise.
        "control_folder": str(VAR_DIR / "broker" / "control"),
        "store_processed": False,
        # How often an idle worker looks for new messages (kombu's default is 1 s).
        "polling_interval": 0.05,
    }
else:
    # A message a worker took but never acknowledged is handed out again after this long.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
# Acknowledge after the task ran, and put the message back when the worker process dies.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TASK_DEFAULT_QUEUE = "sampling"
CELERY_TASK_ROUTES = {
    "modelserving.*": {"queue": "sampling"},
    # An export of a large batch takes minutes: it has its queue and its worker (`exporter`), so it
    # never waits behind sampling messages and never holds a sampling slot.
    "annotation.export_run": {"queue": "exports"},
    # The recovery sweeps are short: they run next to sampling, on the CPU boxes.
    "annotation.*": {"queue": "sampling"},
    # The heartbeat check runs where the web tier's workers are: it must work when GPU boxes die.
    "training.runs_check_heartbeats": {"queue": "sampling"},
    "training.*": {"queue": "gpu"},
}
# Both limits stay below the broker's visibility timeout, so a slow task is never handed to a
# second worker while the first still runs it.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=600)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=660)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# --- Recovery of stuck work -------------------------------------------------------------------
# A message can be lost before any worker takes it (a publish that failed after the commit, a Redis
# that lost data, a worker that died holding it until the visibility timeout): the periodic sweep
# sends again, through the same idempotent task, what stayed queued or whose lease lapsed.
RECOVERY = {
    # How often `celery beat` runs the sweeps (seconds).
    "EVERY": env.float("RECOVERY_EVERY", default=30.0),
    # Queued this long (since its last change) with nothing running it: its message is presumed lost.
    # Keep it above SAMPLING_BACKOFF_MAX, the longest a retry legitimately waits while queued.
    "QUEUED_AFTER": env.float("RECOVERY_QUEUED_AFTER", default=120.0),
    # Running, but its lease lapsed this long ago: its worker died and no redelivery took it over.
    # SAMPLING_LEASE_SECONDS + this must be at least SAMPLING_CONNECT_TIMEOUT + SAMPLING_READ_TIMEOUT
    # (a request that waits that long is still alive); `manage.py check` warns otherwise.
    "LAPSED_AFTER": env.float("RECOVERY_LAPSED_AFTER", default=60.0),
    # Only a lapsed lease counts: one whose worker stopped this many times ends failed, with the
    # reason. A generation that was only ever queued is sent again for as long as it takes.
    "MAX_REQUEUES": env.int("RECOVERY_MAX_REQUEUES", default=3),
}
# Periodic work (`celery beat`): fail training runs whose heartbeat stopped; send stuck generations
# and exports again.
CELERY_BEAT_SCHEDULE = {
    "training-runs-check-heartbeats": {"task": "training.runs_check_heartbeats", "schedule": 60.0},
    "generations-recover": {"task": "modelserving.generations_recover", "schedule": RECOVERY["EVERY"]},
    "exports-recover": {"task": "annotation.exports_recover", "schedule": RECOVERY["EVERY"]},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Sampling and serving: config/settings/serving.py --------------------------------------
from .serving import *  # noqa: E402, F403
from .serving import VARIANT_HEALTH  # noqa: E402

CELERY_BEAT_SCHEDULE["variants-check"] = {"task": "modelserving.variants_check",
                                          "schedule": VARIANT_HEALTH["CHECK_EVERY"]}
# Pairs, red-team responses and retries one person may have queued or running at once.
MAX_IN_FLIGHT_PER_USER = env.int("MAX_IN_FLIGHT_PER_USER", default=6)
# Held-out test split of each frozen batch (Llama 2 held out 1,000 comparisons per batch).
HELD_OUT_MAX = env.int("HELD_OUT_MAX", default=1000)
HELD_OUT_SHARE = env.float("HELD_OUT_SHARE", default=0.1)
# Overlap review: how long a claimed review task stays with its reviewer, and how often the
# queue serves a gold item (blind) instead of overlap work.
REVIEW_LEASE_SECONDS = env.int("REVIEW_LEASE_SECONDS", default=600)
REVIEW_GOLD_RATE = env.float("REVIEW_GOLD_RATE", default=0.1)
# Annotators whose gold accuracy falls below this (after REVIEW_GOLD_MIN_ITEMS gold answers) are flagged.
GOLD_FLAG_THRESHOLD = env.float("GOLD_FLAG_THRESHOLD", default=0.7)
GOLD_MIN_ITEMS = env.int("GOLD_MIN_ITEMS", default=5)
# Annotators whose votes go against everyone else's Bradley–Terry fit more than chance allows
# (Fisher's combined p-value below ANOMALY_ALPHA, after ANOMALY_MIN_VOTES votes) are flagged.
ANOMALY_ALPHA = env.float("ANOMALY_ALPHA", default=0.001)
ANOMALY_MIN_VOTES = env.int("ANOMALY_MIN_VOTES", default=20)
if not 0 < ANOMALY_ALPHA < 0.5:
    raise ImproperlyConfigured(f"ANOMALY_ALPHA={ANOMALY_ALPHA}: a significance level between 0 and 0.5 "
                               "(0.001 by default).")
if ANOMALY_MIN_VOTES < 1:
    raise ImproperlyConfigured(f"ANOMALY_MIN_VOTES={ANOMALY_MIN_VOTES}: at least 1 vote.")
# Exports: where files are written, and the key of the annotators' pseudonyms (a keyed HMAC).
EXPORT_DIR = Path(env.str("EXPORT_DIR", default=str(VAR_DIR / "exports")))
# An export job's claim on its (batch, format), renewed as rows are written; its task's time limit
# (kept below CELERY_BROKER_VISIBILITY_TIMEOUT); tries before it is marked failed.
EXPORT_LEASE_SECONDS = env.float("EXPORT_LEASE_SECONDS", default=60.0)
EXPORT_TIME_LIMIT = env.int("EXPORT_TIME_LIMIT", default=3000)
EXPORT_MAX_ATTEMPTS = env.int("EXPORT_MAX_ATTEMPTS", default=3)
ANNOTATOR_PSEUDONYM_KEY = env.str("ANNOTATOR_PSEUDONYM_KEY", default="")
# One import of preference data: at most this many bytes (the upload or the file) and records.
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=200 * 2**20)
IMPORT_MAX_ROWS = env.int("IMPORT_MAX_ROWS", default=500_000)
# Seconds a probe may take: the broker's, and each variant's (GET /models through the sampler's client).
HEALTH_PROBE_TIMEOUT = env.float("HEALTH_PROBE_TIMEOUT", default=3.0)
# The public /health answer (ok or 503) is computed at most this often; staff get fresh details.
HEALTH_CACHE_SECONDS = env.float("HEALTH_CACHE_SECONDS", default=15.0)

# --- Training runs: config/settings/training.py ----------------------------------------------
from .training import *  # noqa: E402, F403

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
                   "server": {"()": "django.utils.log.ServerFormatter", "format": "[{server_time}] {message}",
                              "style": "{"}},
    # Every handler redacts the secrets that travel in URLs (an invitation's token; core/logging.py).
    "filters": {"redact": {"()": "core.logging.RedactSecrets"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]},
                 "server": {"class": "logging.StreamHandler", "formatter": "server", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpx2": {"level": "WARNING"},
                # runserver's request lines (Django's own handler for them has no filter).
                "django.server": {"handlers": ["server"], "level": "INFO", "propagate": False}},
}
