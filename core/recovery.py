"""The recovery sweeps' one loop (stuck generations, stuck export jobs): each stuck row, already
locked by the caller's transaction, is recovered in its own savepoint."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet


def stuck(queryset: QuerySet, *, now: datetime, queued_after: float | None = None,
          lapsed_after: float | None = None) -> QuerySet:
    """The rows of ``queryset`` (a model with ``status``, ``updated_at`` and ``lease_expires_at``)
    queued for ``queued_after`` seconds since their last change, or running with a lease that lapsed
    ``lapsed_after`` seconds ago; the thresholds default to RECOVERY_QUEUED_AFTER / _LAPSED_AFTER."""
    recovery = settings.RECOVERY
    queued_after = recovery["QUEUED_AFTER"] if queued_after is None else queued_after
    lapsed_after = recovery["LAPSED_AFTER"] if lapsed_after is None else lapsed_after
    return queryset.filter(Q(status="queued", updated_at__lt=now - timedelta(seconds=queued_after))
                           | Q(status="running", lease_expires_at__lt=now - timedelta(seconds=lapsed_after)))


def recover_each(rows: Iterable, recover_one: Callable[[object], str], *, what: str,
                 logger: logging.Logger) -> tuple[list[int], list[int]]:
    """Run ``recover_one(row)`` ("requeued" or "failed") for each row inside a savepoint: a row the
    database refuses, or whose message cannot be sent, rolls back alone, is logged, and the sweep
    goes on with the others. Returns the ids (requeued, failed)."""
    requeued, failed = [], []
    for row in rows:
        try:
            with transaction.atomic():
                outcome = recover_one(row)
        except Exception:
            logger.exception("recovery: %s %s could not be sent again; the sweep goes on", what, row.pk)
            continue
        (requeued if outcome == "requeued" else failed).append(row.pk)
    if requeued or failed:
        logger.warning("recovery: sent %s stuck %ss again %s; failed %s", len(requeued), what, requeued, failed)
    return requeued, failed
