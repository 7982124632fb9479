"""Text that people type: its limits and the one cleaner every service uses (the API's serializers
read the same limits for the schema's maxLength)."""

from django.core.exceptions import ValidationError

MAX_MESSAGE_CHARS = 20_000  # a prompt, a user message, a system prompt
MAX_ANSWER_CHARS = 40_000  # an ideal answer: a demonstration, a rewrite
MAX_NOTE_CHARS = 2_000  # why a pair is unusable, a gold item's or a review's note, a red-team note


def clean_text(text: str | None, *, field: str, limit: int, what: str, empty: str | None = None) -> str:
    """``text`` without surrounding white space. ValidationError on ``field`` when it is longer than
    ``limit`` ("Keep {what} under …"), or empty when ``empty`` (the message) is given; without
    ``empty``, nothing written is ""."""
    text = (text or "").strip()
    if not text and empty is not None:
        raise ValidationError({field: empty})
    if len(text) > limit:
        raise ValidationError({field: f"Keep {what} under {limit:,} characters."})
    return text
