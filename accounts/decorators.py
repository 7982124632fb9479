from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

from .roles import has_role


def role_required(*roles: str):
    """Logged in and holding one of ``roles``; otherwise the login page or a 403."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(request, *args, **kwargs):
            if not has_role(request.user, *roles):
                raise PermissionDenied("This page is for " + " or ".join(roles) + "s.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
