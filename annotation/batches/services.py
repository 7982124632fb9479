"""Weekly batches: which batch a judgement or a demonstration lands in (``batch_for``, under the
batch's shared lock), freezing (immutable from then on) and the deterministic held-out split.

Locks are always taken in one order: the batch, then the turn, then its generations (as
``batch_freeze`` does: the batch, then its turns), so no two operations can wait on each other."""

from __future__ import annotations

import hashlib
import heapq
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import JSONObject
from django.utils import timezone

from accounts.roles import ADMIN, has_role
from core.exceptions import Conflict

from ..models import Batch, Dialogue, Turn


def _stratum(turn) -> tuple[str, str]:
    return turn.focus, ("unusable" if turn.both_unusable else turn.strength)


def held_out_size(total: int, *, share: float, maximum: int) -> int:
    """The paper holds 1,000 comparisons of each batch out: that, or ``share`` of it if smaller."""
    return min(maximum, int(total * share))


@dataclass(frozen=True)
class SplitRow:
    pk: int
    focus: str
    strength: str
    both_unusable: bool


def split_plan(batch_label: str, turns: list, *, share: float, maximum: int) -> set[int]:
    """The ids of the held-out test turns. Deterministic: the same batch always gives the same split.

    Stratified by (focus, strength): each stratum gets its proportional share of the test
    quota (largest remainders settle the rounding); within a stratum, turns are ranked by a hash
    of the batch and the turn id, so the choice depends neither on row order nor on chance.
    """
    total = len(turns)
    quota = held_out_size(total, share=share, maximum=maximum)
    strata: dict[tuple, list] = defaultdict(list)
    for turn in turns:
        strata[_stratum(turn)].append(turn.pk)
    exact = {key: quota * len(members) / total for key, members in strata.items()} if total else {}
    counts = {key: int(value) for key, value in exact.items()}
    leftover = quota - sum(counts.values())
    for key in sorted(exact, key=lambda k: (-(exact[k] - counts[k]), k))[:leftover]:
        counts[key] += 1
    held_out = set()
    for key, members in strata.items():
        if counts[key]:
            ranked = heapq.nsmallest(counts[key], members,
                                     key=lambda pk: hashlib.sha256(f"{batch_label}:{pk}".encode()).digest())
            held_out.update(ranked)
    return held_out


def _summary(judged) -> dict:
    """What the batch holds, from aggregate queries (a batch may hold a million judgements)."""
    from modelserving.models import Generation

    def grouped(field):
        return dict(judged.values_list(field).annotate(n=Count("id")).order_by(field))

    variants = Generation.objects.filter(pair__turn__in=judged).values_list("variant__name").annotate(
        n=Count("id")).order_by("variant__name")
    guidelines = judged.filter(dialogue__guideline__isnull=False).values_list(
        "dialogue__guideline__focus", "dialogue__guideline__version").order_by().distinct()
    return {
        "judgements": judged.count(),
        "by_focus": grouped("dialogue__focus"),
        "by_strength": {key or "both_unusable": n for key, n in grouped("strength").items()},
        "by_safety_bin": {key: n for key, n in grouped("safety_bin").items() if key},
        "policy_variants": dict(variants),
        "guideline_versions": sorted(f"{focus} v{version}" for focus, version in guidelines),
        "split": grouped("split"),
    }


def is_current(batch: Batch, *, moment=None) -> bool:
    """Whether ``batch`` is of this week (or a later one): annotators may still be adding to it."""
    year, week, _ = timezone.localtime(moment).isocalendar()
    return (batch.iso_year, batch.iso_week) >= (year, week)


def _snapshot(judged) -> dict:
    """Copy onto the turns, and return for the batch row, what the exports would otherwise read from
    rows that can still change: renaming a variant or a vendor after the freeze, or retagging a
    dialogue, leaves a re-export byte-identical. Two statements, whatever the batch's size."""
    from modelserving.models import Generation, PolicyVariant

    judged.update(snapshot=Subquery(Dialogue.objects.filter(pk=OuterRef("dialogue_id")).values(json=JSONObject(
        focus="focus", annotator="annotator_id", vendor="annotator__profile__vendor__slug",
        guideline_version="guideline__version", risk_category="risk_category__slug",
        attack_vector="attack_vector__slug"))[:1]))
    ids = Generation.objects.filter(pair__turn__in=judged).values_list("variant_id", flat=True).distinct()
    return {"variants": {str(v.pk): {"name": v.name, "model_name": v.model_name,
                                     "temperature_min": v.temperature_min, "temperature_max": v.temperature_max,
                                     "top_p": v.top_p, "max_new_tokens": v.max_new_tokens}
                         for v in PolicyVariant.objects.filter(pk__in=list(ids))}}


def batch_freeze(*, batch: Batch, admin, force: bool = False) -> Batch:
    """Freeze a batch: from now on nothing is added to it or changed in it (the database refuses it).

    The current week's batch is refused unless ``force``: annotators are still adding to it. Forced,
    it is frozen as it stands, and judgements submitted later that week go to a follow-on batch."""
    if not has_role(admin, ADMIN):
        raise PermissionDenied("Only admins freeze batches.")
    share = settings.HELD_OUT_SHARE
    maximum = settings.HELD_OUT_MAX
    with transaction.atomic():
        # Submissions hold this row's lock (shared) while they place a judgement in the batch, so a
        # judgement is either in before the freeze or goes to the follow-on batch after it. The
        # batch first, then its turns: the one lock order (annotation/workspace/services.py).
        batch = Batch.objects.select_for_update().get(pk=batch.pk)
        if batch.is_frozen:
            raise Conflict(f"Batch {batch} is already frozen.")
        if is_current(batch) and not force:
            follow_on = Batch(iso_year=batch.iso_year, iso_week=batch.iso_week, sequence=batch.sequence + 1)
            raise Conflict(
                f"Batch {batch} is this week's: annotators are still adding to it. Freezing it early (force) "
                f"freezes it as it stands now, and judgements submitted later this week go to a follow-on "
                f"batch, {follow_on}, to be frozen on its own.")
        judged = Turn.objects.filter(batch=batch, submitted_at__isnull=False)
        rows = [SplitRow(*row) for row in judged.values_list(
            "pk", "dialogue__focus", "strength", "both_unusable").iterator(chunk_size=20_000)]
        held_out = split_plan(str(batch), rows, share=share, maximum=maximum)
        del rows
        judged.update(split="train")
        Turn.objects.filter(pk__in=held_out).update(split="test")
        batch.snapshot = _snapshot(judged)
        batch.status = Batch.Status.FROZEN
        batch.frozen_at = timezone.now()
        batch.frozen_by = admin
        batch.summary = {**_summary(judged), "held_out_share": share, "held_out_max": maximum,
                         "frozen_by": admin.get_username(), "frozen_early": is_current(batch)}
        batch.save(update_fields=["status", "frozen_at", "frozen_by", "summary", "snapshot"])
    return batch


# --- Where new work lands ---------------------------------------------------------------------


def _lock_shared(batch_id: int) -> Batch:
    """The batch row under a shared lock: any number of submissions hold it together, and
    ``batch_freeze`` (FOR UPDATE) waits for them, as they wait for it. SQLite serialises writing
    transactions anyway."""
    if connection.vendor == "postgresql":
        return Batch.objects.raw("SELECT * FROM annotation_batch WHERE id = %s FOR SHARE", [batch_id])[0]
    return Batch.objects.select_for_update().get(pk=batch_id)


def _latest_locked(iso_year: int, iso_week: int) -> Batch | None:
    """The week's newest batch under the shared lock, in one query."""
    if connection.vendor == "postgresql":
        rows = list(Batch.objects.raw("SELECT * FROM annotation_batch WHERE iso_year = %s AND iso_week = %s "
                                      "ORDER BY sequence DESC LIMIT 1 FOR SHARE", [iso_year, iso_week]))
        return rows[0] if rows else None
    return Batch.objects.select_for_update().filter(iso_year=iso_year, iso_week=iso_week).order_by("-sequence").first()


def batch_for(moment) -> Batch:
    """The open batch of ``moment``'s ISO week, locked (shared) until the caller's transaction ends.

    The lock orders this against ``batch_freeze``: a judgement is either in the batch before it
    freezes, or it goes to the week's follow-on batch (``2026-W49.1``), made on demand when an
    admin froze the week early; no finished work is turned away. Take it before any turn's lock.
    """
    local = timezone.localtime(moment)
    iso_year, iso_week, iso_day = local.isocalendar()
    latest = _latest_locked(iso_year, iso_week)
    if latest is not None and not latest.is_frozen:
        return latest  # the common case: one query
    sequence = latest.sequence + 1 if latest is not None else 0
    while True:
        batch, _ = Batch.objects.get_or_create(iso_year=iso_year, iso_week=iso_week, sequence=sequence,
                                               defaults={"starts_on": local.date() - timedelta(days=iso_day - 1)})
        batch = _lock_shared(batch.pk)
        if not batch.is_frozen:
            return batch
        sequence += 1
