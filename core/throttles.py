"""DRF throttles that count in the cache (Redis in production) and fail open.

A throttle guards against abuse; it is not worth an outage. When the cache cannot be reached the
request is served and the error logged (the public /health answers 503 meanwhile, so operators
see it). The client's address is worked out once, the DRF way, for throttles and for django-axes's
failed-login lockout alike: NUM_PROXIES says how many proxies in front of gunicorn append to
X-Forwarded-For (0: the socket's address, nothing a client sends).
"""

import logging

from rest_framework.throttling import AnonRateThrottle, BaseThrottle, ScopedRateThrottle, UserRateThrottle

logger = logging.getLogger(__name__)


def client_ip(request) -> str:
    """The client's address as DRF's throttles see it (axes's AXES_CLIENT_IP_CALLABLE)."""
    return BaseThrottle().get_ident(request)


class FailOpen:
    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except Exception as error:  # redis.ConnectionError, a timeout: whatever the cache raises
            logger.error("throttle %s: the cache cannot be reached (%s: %s); request let through",
                         type(self).__name__, error.__class__.__name__, error)
            return True


class AnonThrottle(FailOpen, AnonRateThrottle):
    pass


class UserThrottle(FailOpen, UserRateThrottle):
    pass


class LoginThrottle(FailOpen, ScopedRateThrottle):
    """Token requests per client address (on top of axes's lockout per username and address)."""

    scope_attr = "throttle_scope"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
