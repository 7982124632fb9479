"""django-axes's lockout check, for logins that come with a request.

Every door a person can knock on (the login page, the admin's login, the token endpoint) passes its
request to ``authenticate``, and axes refuses a locked-out username from that address. Code that
checks a password with no request at all (the test client's ``login``, a management command) has no
address to lock and is not a door: axes would raise there, so it is skipped.
"""

from datetime import UTC

from axes.backends import AxesStandaloneBackend
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import ValidationError
from rest_framework import authentication, exceptions

from .roles import user_with_roles


class LockoutBackend(AxesStandaloneBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def lockout_response(request, original_response, credentials):
    """axes's answer to a locked-out login: JSON for the API (the token endpoint), the page elsewhere."""
    from django.http import JsonResponse
    from django.shortcuts import render

    message = "Too many failed logins: this account is locked from your address for a while."
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=429)
    return render(request, "accounts/locked_out.html", status=429)


class PasswordBackend(ModelBackend):
    """Django's username-and-password backend; a session's user comes with their roles in the same
    query (every page checks a role)."""

    def get_user(self, user_id):
        try:
            user_id = get_user_model()._meta.pk.to_python(user_id)
        except ValidationError:
            return None
        user = user_with_roles(user_id=user_id)
        if user is None or not self.user_can_authenticate(user):
            return None
        return user


def token_expired(created) -> bool:
    """Whether a token made at ``created`` is older than API_TOKEN_MAX_AGE_HOURS."""
    from datetime import datetime, timedelta

    from django.conf import settings
    from django.utils import timezone

    if created is None:
        return True
    if isinstance(created, str):  # a raw statement's column, as some backends hand it over
        created = datetime.fromisoformat(created)
    if timezone.is_naive(created):
        created = created.replace(tzinfo=UTC)
    return created < timezone.now() - timedelta(hours=settings.API_TOKEN_MAX_AGE_HOURS)


def revoke_tokens_on_password_change_or_deactivation(sender, instance, raw=False, **kwargs) -> None:
    """pre_save of a user: a new password, or a deactivation, revokes the user's API tokens (the
    sessions end by themselves: Django checks the password's hash and the active flag on each)."""
    if raw or instance.pk is None:
        return
    from rest_framework.authtoken.models import Token

    before = type(instance)._default_manager.filter(pk=instance.pk).values("password", "is_active").first()
    if before is None:
        return
    if before["password"] != instance.password or (before["is_active"] and not instance.is_active):
        Token.objects.filter(user_id=instance.pk).delete()


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication, the token's user and their roles in one query."""

    def authenticate_credentials(self, key):
        user = user_with_roles(token_key=key)
        if user is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        if token_expired(user.token_created):
            raise exceptions.AuthenticationFailed(
                "The token has expired: ask for a new one (POST /api/auth/token/).")
        # The token as read (its creation time deferred: nothing on a request reads it).
        token = self.get_model().from_db(user._state.db, ["key", "user_id"], [key, user.pk])
        token.user = user
        return user, token
