from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "People"

    def ready(self):
        from django.db.models.signals import post_migrate

        from .roles import ensure_role_groups

        post_migrate.connect(ensure_role_groups, sender=self)
