"""Middleware of Tandem's own."""

from django.core.exceptions import BadRequest
from django.shortcuts import render
from django.urls import Resolver404, resolve

from .throttles import LoginThrottle

# The doors where a password is checked from a form (the token endpoint is a DRF view and carries
# the same throttle itself): their POSTs count against one limit per client address.
LOGIN_VIEWS = {"accounts:login", "admin:login"}


class _LoginScope:
    throttle_scope = "login"


class LoginRateLimit:
    """THROTTLE_LOGIN per client address across the login page, the admin's login and the token
    endpoint (one counter): a POST over it is answered 429 before the view runs, so before any
    password hash is computed. axes locks a username out per address after failed logins; this
    limits how many passwords one address may have checked at all, whatever the usernames."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "POST" and self._is_login(request):
            throttle = LoginThrottle()
            if not throttle.allow_request(request, _LoginScope()):
                wait = throttle.wait()
                response = render(request, "accounts/rate_limited.html", {"wait": int(wait or 60)}, status=429)
                response["Retry-After"] = str(int(wait or 60))
                return response
        return self.get_response(request)

    @staticmethod
    def _is_login(request) -> bool:
        try:
            return resolve(request.path_info).view_name in LOGIN_VIEWS
        except Resolver404:
            return False


class RefuseNulCharacters:
    """A query string that carries a NUL character is refused 400 before any view runs. No value in
    Tandem may hold one (Django's and DRF's form fields refuse them in bodies; PostgreSQL's text
    refuses them outright), and a filter that passed one on would answer 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if any("\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists()):
            raise BadRequest("A query parameter contains a NUL character.")
        return self.get_response(request)
