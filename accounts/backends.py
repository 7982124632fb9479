"""django-axes's lockout check, for logins that come with a request.

Every door a person can knock on (the login page, the admin's login, the token endpoint) passes its
request to ``authenticate``, and axes refuses a locked-out username from that address. Code that
checks a password with no request at all (the test client's ``login``, a management command) has no
address to lock and is not a door: axes would raise there, so it is skipped.
"""

from axes.backends import AxesStandaloneBackend


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
