"""Weekly batches: freezing (immutable from then on) and the deterministic held-out split."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.roles import ADMIN, has_role

from .models import Batch, Turn


def _stratum(turn: Turn) -> tuple[str, str]:
    return turn.dialogue.focus, ("unusable" if turn.both_unusable else turn.strength)


def held_out_size(total: int, *, share: float, maximum: int) -> int:
    """The paper holds 1,000 comparisons of each batch out: that, or ``share`` of it if smaller."""
    return min(maximum, int(total * share))


def split_plan(batch_label: str, turns: list[Turn], *, share: float, maximum: int) -> dict[int, str]:
    """{turn id: "train"|"test"}. Deterministic: the same batch always gives the same split.

    Stratified by (focus, strength): each stratum gets its proportional share of the test
    quota (largest remainders settle the rounding); within a stratum, turns are ranked by a hash
    of the batch and the turn id, so the choice does not depend on row order or on chance.
    """
    total = len(turns)
    quota = held_out_size(total, share=share, maximum=maximum)
    strata: dict[tuple, list[Turn]] = defaultdict(list)
    for turn in turns:
        strata[_stratum(turn)].append(turn)
    exact = {key: quota * len(members) / total for key, members in strata.items()} if total else {}
    counts = {key: int(value) for key, value in exact.items()}
    leftover = quota - sum(counts.values())
    for key in sorted(exact, key=lambda k: (-(exact[k] - counts[k]), k))[:leftover]:
        counts[key] += 1
    plan = {}
    for key, members in strata.items():
        ranked = sorted(members, key=lambda t: hashlib.sha256(f"{batch_label}:{t.pk}".encode()).hexdigest())
        for position, turn in enumerate(ranked):
            plan[turn.pk] = "test" if position < counts[key] else "train"
    return plan


def _summary(batch: Batch, turns: list[Turn], plan: dict[int, str]) -> dict:
    variants: Counter = Counter()
    for turn in turns:
        for generation in turn.pair.generations.all():
            variants[generation.variant.name] += 1
    return {
        "judgements": len(turns),
        "by_focus": dict(sorted(Counter(t.dialogue.focus for t in turns).items())),
        "by_strength": dict(sorted(Counter(t.strength or "both_unusable" for t in turns).items())),
        "by_safety_bin": dict(sorted(Counter(t.safety_bin for t in turns if t.safety_bin).items())),
        "policy_variants": dict(sorted(variants.items())),
        "guideline_versions": sorted({f"{t.dialogue.guideline.focus} v{t.dialogue.guideline.version}"
                                      for t in turns if t.dialogue.guideline_id}),
        "split": dict(sorted(Counter(plan.values()).items())),
    }


def batch_freeze(*, batch: Batch, admin) -> Batch:
    """Freeze a batch: from now on nothing is added to it or changed in it."""
    if not has_role(admin, ADMIN):
        raise PermissionDenied("Only admins freeze batches.")
    share = settings.HELD_OUT_SHARE
    maximum = settings.HELD_OUT_MAX
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch.pk)
        if batch.is_frozen:
            raise ValidationError(f"Batch {batch} is already frozen.")
        # Judgements that are being submitted right now into this batch finish first (row locks).
        turns = list(
            Turn.objects.select_for_update(of=("self",))
            .filter(batch=batch).select_related("dialogue__guideline")
            .prefetch_related("pair__generations__variant").order_by("pk")
        )
        plan = split_plan(str(batch), turns, share=share, maximum=maximum)
        for split in ("train", "test"):
            Turn.objects.filter(pk__in=[pk for pk, value in plan.items() if value == split]).update(split=split)
        batch.status = Batch.Status.FROZEN
        batch.frozen_at = timezone.now()
        batch.frozen_by = admin
        batch.summary = {**_summary(batch, turns, plan), "held_out_share": share, "held_out_max": maximum,
                         "frozen_by": admin.get_username()}
        batch.save(update_fields=["status", "frozen_at", "frozen_by", "summary"])
    return batch
