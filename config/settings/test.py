"""The test suite: real PostgreSQL and Redis when DATABASE_URL / CELERY_BROKER_URL are set
(as CI sets them), the embedded defaults otherwise."""

from .base import *  # noqa: F403
from .base import DATABASES, VAR_DIR

DEBUG = False
SECRET_KEY = "test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

# The Celery worker the tests start is another process: it must reach the same test database,
# so SQLite's test database is a file, never ":memory:".
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-tandem.sqlite3")}

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
