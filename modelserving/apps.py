from django.apps import AppConfig


class ModelservingConfig(AppConfig):
    name = "modelserving"
    verbose_name = "Model serving"

    def ready(self):
        from . import checks  # noqa: F401 — registers the system checks
