"""Work handed out through leases: a task row with `leased_by`, `lease_token`, `lease_expires_at`
(core.models.LeasedWork).

`lease_next` takes the oldest task of a queryset that nobody holds, or whose lease expired, with
`SELECT … FOR UPDATE SKIP LOCKED` (concurrent claims never get the same row and never wait on each
other; on SQLite, write transactions are serialised instead). `lease_check` refuses a submission
without the live lease. Call both inside a transaction.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from .exceptions import Conflict


class LeaseLost(Conflict):
    """A submission without a live lease on its task (expired, or taken over by someone else)."""


def free(queryset: QuerySet) -> QuerySet:
    return queryset.filter(Q(leased_by__isnull=True) | Q(lease_expires_at__lte=timezone.now()))


def held_by(user) -> Q:
    """A live lease of this user."""
    return Q(leased_by=user, lease_expires_at__gt=timezone.now())


def lease(task, *, user, seconds: float):
    task.leased_by, task.lease_token = user, uuid.uuid4()
    task.lease_expires_at = timezone.now() + timedelta(seconds=seconds)
    task.save(update_fields=["leased_by", "lease_token", "lease_expires_at"])
    return task


def lease_next(candidates: QuerySet, *, user, seconds: float):
    task = free(candidates).order_by("pk").select_for_update(skip_locked=True, of=("self",)).first()
    return lease(task, user=user, seconds=seconds) if task is not None else None


def lease_check(task, *, user, token, what: str = "task") -> None:
    """Raises LeaseLost unless ``user`` holds the live lease ``token`` on ``task`` (locked by the caller)."""
    if (task.leased_by_id != user.pk or str(task.lease_token) != str(token)
            or task.lease_expires_at is None or task.lease_expires_at <= timezone.now()):
        raise LeaseLost(f"Your lease on this {what} has expired and it went back to the queue; nothing was "
                        "stored. Take the next one.")
