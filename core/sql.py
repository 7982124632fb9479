"""Helpers for the few statements written by hand (accounts/roles.py, annotation/workspace/hot_path.py)."""

from django.db import connection


def id_fits(model, value: int) -> bool:
    """Whether ``value`` can be ``model``'s id in this database. A larger number is no row (as the
    ORM answers since Django 5.0); sent to SQLite, it would raise instead (OverflowError)."""
    low, high = connection.ops.integer_field_range(model._meta.pk.get_internal_type())
    return (low is None or value >= low) and (high is None or value <= high)
