"""Validators that API serializers share, written so that drf-spectacular can put them in the schema."""

from django.core.validators import RegexValidator

# Somewhere a character that is not whitespace. Services strip what people write and refuse what is
# left empty; as a RegexValidator this becomes the schema's `pattern` (matched anywhere in the text,
# as JSON Schema and Python's re.search both do), so clients and schema checks know that blank text
# is refused before they send it.
NOT_BLANK = r"\S"


def not_blank(message: str) -> dict:
    """A CharField's arguments that refuse empty or whitespace-only text with the service's own
    message: `serializers.CharField(trim_whitespace=False, **not_blank("Write a message first."))`.
    The schema gets `minLength: 1` and `pattern: \\S`."""
    return {"allow_blank": False, "error_messages": {"blank": message},
            "validators": [RegexValidator(NOT_BLANK, message=message)]}
