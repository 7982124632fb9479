from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "People"

    def ready(self):
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_migrate, pre_save

        from .backends import revoke_tokens_on_password_change_or_deactivation
        from .roles import ensure_role_groups

        # After every app's migrations, so that the permissions of apps listed later exist too.
        post_migrate.connect(ensure_role_groups, dispatch_uid="accounts.ensure_role_groups")
        pre_save.connect(revoke_tokens_on_password_change_or_deactivation, sender=get_user_model(),
                         dispatch_uid="accounts.revoke_tokens")
