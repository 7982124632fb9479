"""django-axes's lockout check, for logins that come with a request.

Every door a person can knock on (the login page, the admin's login, the token endpoint) passes its
request to ``authenticate``, and axes refuses a locked-out username from that address. Code that
checks a password with no request at all (the test client's ``login``, a management command) has no
address to lock and is not a door: axes would raise there, so it is skipped.
"""

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


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication, the token's user and their roles in one query."""

    def authenticate_credentials(self, key):
        user = user_with_roles(token_key=key)
        if user is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        # The token as read (its creation time deferred: nothing on a request reads it).
        token = self.get_model().from_db(user._state.db, ["key", "user_id"], [key, user.pk])
        token.user = user
        return user, token
