"""Reads of batches that pages, APIs and commands share."""

import re

from ..models import Batch


def batch_by_label(label: str):
    """'2026-W48' → that batch ('2026-W48.1' → its first follow-on), or None."""
    match = re.fullmatch(r"(\d{4})-W(\d{1,2})(?:\.(\d{1,3}))?", label.strip())
    if not match:
        return None
    return Batch.objects.filter(iso_year=int(match[1]), iso_week=int(match[2]),
                                sequence=int(match[3] or 0)).first()
