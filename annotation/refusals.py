"""A service's refusal as an HTTP answer, the same way in every DRF view: a lost lease is 409
with its reason, a refused permission 403, a broken rule 400 with the messages per field."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from rest_framework import status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from .leases import LeaseLost


def refusal(error: Exception) -> Response:
    """Returns the 409 answer; raises DRF's exception for the others (the view lets it through)."""
    if isinstance(error, LeaseLost):
        return Response({"detail": error.messages[0]}, status=status.HTTP_409_CONFLICT)
    if isinstance(error, DjangoPermissionDenied):
        raise PermissionDenied(str(error))
    raise ValidationError(error.message_dict if hasattr(error, "error_dict") else {"detail": error.messages})
