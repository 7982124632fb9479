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
