"""Serializer fields that take a JSON body's types at their word.

DRF's fields coerce: CharField turns 0 into "0", FloatField takes false as 0.0 and "0.5" as 0.5,
IntegerField takes "3", BooleanField takes "yes" and 1. From a form or a multipart upload every value
is text and that coercion is what makes them work; from a JSON body it stores what the schema says
is wrong, so a client's bug (a number where text belongs) goes unnoticed. These fields refuse a JSON
value of the wrong type with DRF's own "invalid" message (400), and coerce form input as DRF does
(booleans excepted: see BooleanField).
Input serializers use them: `from core import fields as strict` … `strict.CharField(max_length=…)`.
"""

from django.http import QueryDict
from rest_framework import serializers


def _from_json(field) -> bool:
    """Whether the field reads a parsed JSON body (a dict or list), not form data (a QueryDict)."""
    data = getattr(field.root, "initial_data", None)
    return data is not None and not isinstance(data, QueryDict)


class CharField(serializers.CharField):
    """Also as the schema reads it: `maxLength` counts the text as sent (DRF counted it after trimming)."""

    def to_internal_value(self, data):
        if _from_json(self) and not isinstance(data, str):
            self.fail("invalid")
        if self.max_length is not None and isinstance(data, str) and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


class IntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if _from_json(self) and (isinstance(data, bool) or not isinstance(data, (int, float))):
            self.fail("invalid")
        return super().to_internal_value(data)


class FloatField(serializers.FloatField):
    def to_internal_value(self, data):
        if _from_json(self) and (isinstance(data, bool) or not isinstance(data, (int, float))):
            self.fail("invalid")
        return super().to_internal_value(data)


class BooleanField(serializers.BooleanField):
    """JSON's true and false; in a form, their text ("true", "false"), as OpenAPI writes a boolean
    into form data. DRF would also read 1, "0", "yes", "on"."""

    def to_internal_value(self, data):
        if _from_json(self) and not isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, str) and data not in ("true", "false"):
            self.fail("invalid")
        return super().to_internal_value(data)
