"""The embedded default: one machine, nothing installed beyond `make run`."""

from .base import *  # noqa: F403
from .base import env

DEMO_ACCOUNTS = True
API_SCHEMA_PUBLIC = True
DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str(
    "SECRET_KEY", default="local-development-key-not-for-production-0123456789abcdefghijklmnop"
)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}
# Static files straight from the finders, no collectstatic step in development.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
# No collectstatic step on the embedded default, whatever DEBUG says.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
