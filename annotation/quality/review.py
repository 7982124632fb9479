"""Overlap review and gold checks, handed out through a leased queue.

A share of each focus's judged turns (the admin's `OverlapPolicy`) is re-judged by k other
annotators: each re-judgement is a `ReviewTask` slot with its own, freshly drawn, left side and
no trace of the first judgement. Gold items (admin-marked turns with an expected answer) are
served the same way, blind, among the overlap work.

The queue: `review_claim` returns the reviewer's live lease, or takes the oldest open task that
nobody holds (or whose lease expired) with `SELECT … FOR UPDATE SKIP LOCKED`, so concurrent
claims never get the same task and never wait on each other. A lease expires after
REVIEW_LEASE_SECONDS and the task goes back to the queue. `review_submit` needs the live lease
(its token), otherwise `LeaseLost` (HTTP 409) and nothing is stored.
"""

from __future__ import annotations

import hashlib
import random

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from accounts.roles import ADMIN, ANNOTATOR, has_role
from core import leases
from core.leases import LeaseLost

from ..models import Focus, GoldItem, OverlapPolicy, ReviewTask, Turn
from ..workspace.judgements import JUDGEMENT_FIELDS, MAX_REASON_CHARS, MAX_TIME_SPENT_MS, Judgement, resolve_judgement

# How many other annotators an overlapped turn goes to, at most.
MAX_OVERLAP_REVIEWERS = 10


def _share_hit(turn_id: int, share: float) -> bool:
    """Deterministic sampling: the same turn is always in or out for the same share."""
    digest = hashlib.sha256(f"overlap:{turn_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def overlap_policy_set(*, admin, focus: str, share: float, reviewers: int) -> OverlapPolicy:
    if not has_role(admin, ADMIN):
        raise PermissionDenied("Only admins set the overlap.")
    errors = {}
    if focus not in Focus.values:
        errors["focus"] = "Pick helpfulness or safety."
    if not 0 <= share <= 1:
        errors["share"] = "A share between 0 and 1."
    if not 1 <= reviewers <= MAX_OVERLAP_REVIEWERS:
        errors["reviewers"] = f"Between 1 and {MAX_OVERLAP_REVIEWERS} other annotators."
    if errors:
        raise ValidationError(errors)
    policy, _ = OverlapPolicy.objects.update_or_create(
        focus=focus, defaults={"share": share, "reviewers": reviewers, "updated_by": admin})
    return policy


def _new_tasks(turn: Turn, *, kind: str, slots) -> list[ReviewTask]:
    generations = sorted(turn.pair.generations.all(), key=lambda g: g.position)
    tasks = []
    for slot in slots:
        rng = random.Random(f"{kind}:{turn.pk}:{slot}")  # sides re-drawn per task, reproducibly
        tasks.append(ReviewTask(turn=turn, kind=kind, slot=slot, left_generation=rng.choice(generations)))
    return tasks


def overlap_on_judgement(sender, *, turn: Turn, **kwargs) -> None:
    """The receiver of ``judgement_stored`` (annotation/apps.py connects it): a judged turn the
    policy samples gets its review slots, in the judgement's transaction."""
    overlap_schedule(turn=turn)


def overlap_schedule(*, turn: Turn) -> list[ReviewTask]:
    """Create the review slots of a freshly judged turn when the policy samples it.
    Call inside the transaction that stores the judgement."""
    if "overlap_policy" in turn.__dict__:  # read with the locked turn (hot_path.locked_turn)
        policy = turn.overlap_policy
    else:
        policy = OverlapPolicy.objects.filter(focus=turn.dialogue.focus).first()
    if policy is None or turn.both_unusable or not _share_hit(turn.pk, policy.share):
        return []
    return ReviewTask.objects.bulk_create(
        _new_tasks(turn, kind=ReviewTask.Kind.OVERLAP, slots=range(1, policy.reviewers + 1)))


def gold_mark(*, admin, turn: Turn, choice_generation_id: int, strength: str = "", note: str = "") -> GoldItem:
    """Mark a judged turn as a gold item: its expected answer is `choice_generation_id` (and, when
    given, the strength)."""
    if not has_role(admin, ADMIN):
        raise PermissionDenied("Only admins mark gold items.")
    if len(note or "") > MAX_REASON_CHARS:
        raise ValidationError({"note": f"Keep the note under {MAX_REASON_CHARS} characters."})
    if choice_generation_id not in {g.pk for g in turn.pair.generations.all()}:
        raise ValidationError({"choice": "The expected answer must be one of the turn's two responses."})
    gold, _ = GoldItem.objects.update_or_create(
        turn=turn, defaults={"expected_generation_id": choice_generation_id, "expected_strength": strength,
                             "note": note, "created_by": admin})
    return gold


def held_by(reviewer) -> Q:
    """A live lease of this reviewer on an open task."""
    return leases.held_by(reviewer) & Q(status=ReviewTask.Status.OPEN)


def _gold_task_for(reviewer) -> ReviewTask | None:
    """An unseen gold item for this reviewer, as a task of its own (created on first serve)."""
    seen = ReviewTask.objects.filter(turn=OuterRef("turn")).filter(
        Q(assigned_to=reviewer) | Q(reviewer=reviewer) | Q(leased_by=reviewer))
    gold = (GoldItem.objects.annotate(seen=Exists(seen)).filter(seen=False)
            .exclude(turn__dialogue__annotator=reviewer).select_related("turn").order_by("pk").first())
    if gold is None:
        return None
    try:
        with transaction.atomic():
            task = _new_tasks(gold.turn, kind=ReviewTask.Kind.GOLD, slots=[None])[0]
            task.assigned_to = reviewer
            task.save()
            return task
    except IntegrityError:  # the same reviewer's concurrent claim created it
        return None


def review_claim(*, reviewer, gold_rate: float | None = None, rng: random.Random | None = None) -> ReviewTask | None:
    """The reviewer's live lease, or a new one on the next task; None when the queue is empty."""
    if not has_role(reviewer, ANNOTATOR):
        raise PermissionDenied("Only annotators review.")
    gold_rate = settings.REVIEW_GOLD_RATE if gold_rate is None else gold_rate
    rng = rng or random.Random()
    with transaction.atomic():
        held = ReviewTask.objects.filter(held_by(reviewer)).order_by("pk").first()
        if held is not None:
            return held
        task = _gold_task_for(reviewer) if rng.random() < gold_rate else None
        if task is not None:
            return leases.lease(task, user=reviewer, seconds=settings.REVIEW_LEASE_SECONDS)
        now = timezone.now()
        busy = ReviewTask.objects.filter(turn=OuterRef("turn")).filter(
            Q(reviewer=reviewer) | Q(leased_by=reviewer, lease_expires_at__gt=now) | Q(assigned_to=reviewer))
        overlap = (ReviewTask.objects.filter(kind=ReviewTask.Kind.OVERLAP, status=ReviewTask.Status.OPEN)
                   .exclude(turn__dialogue__annotator=reviewer).exclude(Exists(busy)))
        task = leases.lease_next(overlap, user=reviewer, seconds=settings.REVIEW_LEASE_SECONDS)
        if task is None and (task := _gold_task_for(reviewer)) is not None:
            task = leases.lease(task, user=reviewer, seconds=settings.REVIEW_LEASE_SECONDS)
        return task


def review_sides(task: ReviewTask):
    generations = list(task.turn.pair.generations.all())
    left = next(g for g in generations if g.pk == task.left_generation_id)
    return left, next(g for g in generations if g.pk != task.left_generation_id)


def review_submit(*, task: ReviewTask, reviewer, lease_token, judgement: Judgement) -> ReviewTask:
    with transaction.atomic():
        task = (ReviewTask.objects.select_for_update(of=("self",)).select_related("turn__dialogue")
                .prefetch_related("turn__pair__generations").get(pk=task.pk))
        if task.status == ReviewTask.Status.DONE and task.reviewer_id == reviewer.pk:
            raise LeaseLost("You already submitted this review.")
        leases.lease_check(task, user=reviewer, token=lease_token, what="review")
        fields = resolve_judgement(*review_sides(task), focus=task.turn.dialogue.focus, judgement=judgement)
        for name in JUDGEMENT_FIELDS:
            setattr(task, name, fields[name])
        spent = judgement.time_spent_ms
        task.time_spent_ms = spent if spent is not None and 0 <= spent <= MAX_TIME_SPENT_MS else None
        task.status, task.reviewer, task.submitted_at = ReviewTask.Status.DONE, reviewer, timezone.now()
        task.lease_token = task.lease_expires_at = None
        task.save()
    return task
