"""Refusals that services raise and that every door (DRF API, pages, commands) reads the same way.

A refusal is a Django ``ValidationError`` (400: the caller broke a rule) or ``PermissionDenied``
(403). Two kinds say more, and the API's exception handler (core/api.py) answers them with
their own status:
- ``Conflict``: the request was valid but the state moved on under it (a lease that expired, a
  turn already judged differently): 409;
- ``Unavailable``: nothing can serve it now (no active policy variant): 503;
- ``TooMany``: the caller already has as much work in flight as one person may: 429.
``NotYours`` is what a selector raises for an id the caller may not see, whether it exists or not:
404 with the body of an unknown id, so nothing tells another user's ids from unknown ones (an
``Http404``, so a page answers it as Django answers an unknown URL).
"""

from django.core.exceptions import ValidationError
from django.http import Http404


class Conflict(ValidationError):
    """Valid, but the state it was made against has changed; nothing was stored."""


class Unavailable(ValidationError):
    """Nothing can serve this now; try again later."""


class TooMany(ValidationError):
    """The caller has too much in flight; try again once some of it is done."""


class NotYours(Http404):
    """Unknown, or someone else's: the same answer either way."""


def refusal_status(error: Exception) -> int:
    """The HTTP status of a service's refusal, for pages and the API alike (core/api.py)."""
    from django.core.exceptions import PermissionDenied

    if isinstance(error, NotYours):
        return 404
    if isinstance(error, Conflict):
        return 409
    if isinstance(error, Unavailable):
        return 503
    if isinstance(error, TooMany):
        return 429
    if isinstance(error, PermissionDenied):
        return 403
    return 400
