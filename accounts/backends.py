"""django-axes's lockout check, for logins that come with a request.

Every door a person can knock on (the login page, the admin's login, the token endpoint) passes its
request to ``authenticate``, and axes refuses a locked-out username from that address. Code that
checks a password with no request at all (the test client's ``login``, a management command) has no
address to lock and is not a door: axes would raise there, so it is skipped.
"""

from axes.backends import AxesStandaloneBackend
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from rest_framework import authentication, exceptions

from .roles import remember_roles, with_roles


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
        user = with_roles(get_user_model()._default_manager.filter(pk=user_id)).first()
        if user is None or not self.user_can_authenticate(user):
            return None
        remember_roles(user, user)
        return user


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication, the token's user and their roles in one query."""

    def authenticate_credentials(self, key):
        model = self.get_model()
        token = with_roles(model.objects.select_related("user"), "user_id").filter(key=key).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        remember_roles(token.user, token)
        return token.user, token
