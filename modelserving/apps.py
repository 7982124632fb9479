from django.apps import AppConfig


class ModelservingConfig(AppConfig):
    name = "modelserving"
    verbose_name = "Model serving"
