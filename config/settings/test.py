"""The test suite: real PostgreSQL and Redis when DATABASE_URL / CELERY_BROKER_URL are set
(as CI sets them), the embedded defaults otherwise."""

from .base import *  # noqa: F403
from .base import CELERY_BROKER_URL, DATABASES, VAR_DIR, env

DEMO_ACCOUNTS = True
API_SCHEMA_PUBLIC = True
DEBUG = False
SECRET_KEY = "test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

# The Celery worker the tests start is another process: it must reach the same test database,
# so SQLite's test database is a file, never ":memory:".
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-tandem.sqlite3")}

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# The Celery worker started by the tests points here at the database pytest-django created.
if env.str("TANDEM_TEST_DATABASE_NAME", default=""):
    DATABASES["default"]["NAME"] = env.str("TANDEM_TEST_DATABASE_NAME")

# Keep the tests' filesystem broker apart from a running `make run` stack.
if CELERY_BROKER_URL.startswith("filesystem"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(VAR_DIR / "test-broker" / "queue"),
        "data_folder_out": str(VAR_DIR / "test-broker" / "queue"),
        "processed_folder": str(VAR_DIR / "test-broker" / "processed"),
        # kombu keeps its exchange tables in ./control unless told otherwise.
        "control_folder": str(VAR_DIR / "test-broker" / "control"),
        "store_processed": False,
        # How often an idle worker looks for new messages (kombu's default is 1 s).
        "polling_interval": 0.05,
    }

WHITENOISE_USE_FINDERS = True

# Model servers the tests start through Tandem (checkpoints served from the dashboard) run the tiny
# random Llama, which vLLM's CPU build cannot serve (head size 16): `transformers serve` unless a
# test asks for vLLM itself (tests/modelserving/test_vllm.py).
LOCAL_MODEL_ENGINE = env.str("LOCAL_MODEL_ENGINE", default="transformers")
WHITENOISE_AUTOREFRESH = True

# Training runs of the tests: their own folder, and a quick heartbeat so cancels land in a second.
TRAINING_DIR = VAR_DIR / "test-runs"
TRAINING_HEARTBEAT_SECONDS = env.float("TRAINING_HEARTBEAT_SECONDS", default=0.5)
TRAINING_KILL_GRACE = env.float("TRAINING_KILL_GRACE", default=5.0)
