"""The recovery sweeps' one loop (stuck generations, stuck export jobs): each stuck row, already
locked by the caller's transaction, is recovered in its own savepoint."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from django.db import transaction


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
