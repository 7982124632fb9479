"""The one place where a service's refusal becomes an HTTP answer (REST_FRAMEWORK's
EXCEPTION_HANDLER): views call services and let refusals through.

    Conflict (a lost lease, a second different judgement)   409 {"detail": message}
    Unavailable (no active variant)                          503 {"detail": message}
    TooMany (pairs in flight over the per-person cap)        429 {"detail": message}
    ValidationError                                          400 the messages per field, or {"detail": [...]}
    PermissionDenied                                         403 {"detail": message}
    NotYours (unknown or someone else's id)                  404 {"detail": "Not found."}, as an unknown id
Everything else goes to DRF's own handler.
"""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .exceptions import Conflict, NotYours, TooMany, Unavailable, refusal_status


def exception_handler(exc, context):
    if isinstance(exc, NotYours):
        return Response({"detail": exceptions.NotFound.default_detail}, status=refusal_status(exc))
    if isinstance(exc, (Conflict, Unavailable)):
        return Response({"detail": exc.messages[0]}, status=refusal_status(exc))
    if isinstance(exc, TooMany):
        exc = exceptions.Throttled(detail=exc.messages[0])
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages})
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    return drf_exception_handler(exc, context)
