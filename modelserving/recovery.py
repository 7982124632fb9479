"""Recovery of lost sampling work: the sweep that sends again what stayed queued or whose lease
lapsed (beat task modelserving.generations_recover, manage.py recover_stuck)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.recovery import recover_each, stuck

from .models import Generation

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovered:
    requeued: list[int]
    failed: list[int]


def generations_recover(*, queued_after: float | None = None, lapsed_after: float | None = None,
                        limit: int = 1000) -> Recovered:
    """Send again the generations whose task was lost: queued for longer than ``queued_after``
    seconds since their last change, or running with a lease that lapsed ``lapsed_after`` seconds
    ago (their worker died and no redelivery took them over). They go through the same task as
    ever, whose claim makes a second delivery harmless and never produces a finished generation
    again.

    Only a lapsed lease counts towards RECOVERY["MAX_REQUEUES"]: a worker died running it, and one
    that kills its worker every time ends failed, with the reason. A generation that was only ever
    queued did nothing wrong (its message was lost, the broker was down): it is sent again for as
    long as it takes. Each row is recovered in its own savepoint: one that cannot be written is
    logged and the sweep goes on with the others."""
    from . import tasks

    now = timezone.now()
    rows = stuck(Generation.objects.all(), now=now, queued_after=queued_after, lapsed_after=lapsed_after)
    max_lapses = settings.RECOVERY["MAX_REQUEUES"]

    def recover_one(generation: Generation) -> str:
        outcome = _recover_one(generation, now=now, max_lapses=max_lapses)
        if outcome == "requeued":
            tasks.generation_sample.delay_on_commit(generation.pk)
        return outcome

    with transaction.atomic():
        # SKIP LOCKED: a generation a worker is claiming right now is not stuck.
        requeued, failed = recover_each(rows.select_for_update(skip_locked=True).order_by("pk")[:limit],
                                        recover_one, what="generation", logger=logger)
    return Recovered(requeued=requeued, failed=failed)


def _recover_one(generation: Generation, *, now, max_lapses: int) -> str:
    """Call inside a savepoint holding the row lock. Returns "requeued" or "failed"."""
    lapsed = generation.status == Generation.Status.RUNNING
    generation.lease_token, generation.lease_expires_at = None, None
    if lapsed and generation.lapses >= max_lapses:
        generation.status, generation.finished_at = Generation.Status.FAILED, now
        generation.error = (
            f"Gave up: the worker running it stopped {generation.lapses + 1} times before it finished."
            + (f" Last error: {generation.error}" if generation.error else ""))
        outcome = "failed"
    else:
        generation.status = Generation.Status.QUEUED
        generation.recoveries += 1
        generation.lapses += int(lapsed)
        outcome = "requeued"
    generation.save(update_fields=["status", "finished_at", "error", "recoveries", "lapses", "lease_token",
                                   "lease_expires_at", "updated_at"])
    return outcome
