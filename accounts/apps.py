from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "People"

    def ready(self):
        from django.db.models.signals import post_migrate

        from .roles import ensure_role_groups

        # After every app's migrations, so that the permissions of apps listed later exist too.
        post_migrate.connect(ensure_role_groups, dispatch_uid="accounts.ensure_role_groups")
