"""Judgements: a judgement of a pair and its rules, shared by the first judgement of a turn
(``judgement_submit``, here) and its overlap reviews (annotation.quality.review.review_submit).

A stored judgement is announced with the ``judgement_stored`` signal, in the submission's
transaction: the overlap review (annotation/quality/review.py) opens its slots from it. The
workspace does not import the quality room; the quality room builds on this one."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from core.exceptions import Conflict
from modelserving.models import Generation

from ..batches.services import batch_for
from ..models import Dialogue, Focus, SafetyBin, Strength, Turn
from ..text import MAX_NOTE_CHARS
from .selectors import locked_turn, sides
from .services import require_owner

MAX_TIME_SPENT_MS = 24 * 3600 * 1000
MAX_REASON_CHARS = MAX_NOTE_CHARS  # why a pair is unusable, a gold item's note

# Sent with ``turn`` (locked, with its dialogue and its focus's overlap policy) once its judgement is
# stored, inside the transaction that stores it.
judgement_stored = Signal()


class JudgementConflict(Conflict):
    """A second, different judgement of a turn that is already judged."""


@dataclass(frozen=True)
class Judgement:
    """What the annotator says about a pair, in the terms of the screen (sides A and B)."""

    choice: str | None = None  # "A" or "B"; None when both are unusable
    strength: str | None = None
    safe_a: bool | None = None
    safe_b: bool | None = None
    both_unusable: bool = False
    unusable_reason: str = ""
    time_spent_ms: int | None = None


def safety_bin(*, chosen_safe: bool, other_safe: bool) -> str:
    if chosen_safe and not other_safe:
        return SafetyBin.CHOSEN_SAFE_OTHER_UNSAFE
    if chosen_safe and other_safe:
        return SafetyBin.BOTH_SAFE
    if not chosen_safe and not other_safe:
        return SafetyBin.BOTH_UNSAFE
    raise ValidationError(
        "You chose the response you labelled unsafe over one you labelled safe. A safe response is "
        "always preferred to an unsafe one: choose the safe response, or correct the labels."
    )


def resolve_judgement(a: Generation, b: Generation, *, focus: str, judgement: Judgement) -> dict:
    """The stored fields for ``judgement`` of responses A and B, or ValidationError naming the first
    broken rule. Judgements of turns and their overlap reviews follow the same rules."""
    if judgement.both_unusable:
        reason = (judgement.unusable_reason or "").strip()
        if not reason:
            raise ValidationError({"unusable_reason": "Say why neither response can be used."})
        if len(reason) > MAX_REASON_CHARS:
            raise ValidationError({"unusable_reason": f"Keep the reason under {MAX_REASON_CHARS} characters."})
        if judgement.choice or judgement.strength:
            raise ValidationError("A pair marked both unusable has no winner: leave the scale empty.")
        return {"chosen_generation_id": None, "strength": "", "chosen_safe": None, "other_safe": None,
                "safety_bin": "", "both_unusable": True, "unusable_reason": reason}
    if judgement.choice not in ("A", "B"):
        raise ValidationError({"choice": "Say which response is better: pick a point on the scale (keys 1–8)."})
    if judgement.strength not in Strength.values:
        raise ValidationError({"strength": "Say how much better: pick a point on the scale (keys 1–8)."})
    chosen, other = (a, b) if judgement.choice == "A" else (b, a)
    if chosen.status == Generation.Status.DONE and not chosen.text.strip():
        # The chosen response becomes the context of the next turn, and an empty one cannot be.
        raise ValidationError({"choice": "The response you chose is empty: choose the other one, or mark both "
                                         "unusable."})
    fields = {"chosen_generation_id": chosen.id, "strength": judgement.strength, "chosen_safe": None,
              "other_safe": None, "safety_bin": "", "both_unusable": False, "unusable_reason": ""}
    if focus == Focus.SAFETY:
        if judgement.safe_a is None or judgement.safe_b is None:
            raise ValidationError({"safety": "Label both responses safe or unsafe."})
        chosen_safe, other_safe = ((judgement.safe_a, judgement.safe_b) if judgement.choice == "A"
                                   else (judgement.safe_b, judgement.safe_a))
        fields.update(chosen_safe=chosen_safe, other_safe=other_safe,
                      safety_bin=safety_bin(chosen_safe=chosen_safe, other_safe=other_safe))
    return fields


JUDGEMENT_FIELDS = ("chosen_generation_id", "strength", "chosen_safe", "other_safe", "safety_bin",
                    "both_unusable", "unusable_reason")


@transaction.atomic
def judgement_submit(*, turn: Turn, annotator, judgement: Judgement) -> tuple[Turn, bool]:
    """Store the judgement of ``turn``; returns (turn, created).

    Submitting the same judgement again (a double click, a network retry) returns the stored one
    with created=False; a different judgement of a judged turn raises JudgementConflict.
    """
    now = timezone.now()
    # The batch first (one lock order). A turn that is judged stays judged, so a repeated
    # submission needs no batch, and does not make this week's if there is none yet. The caller's
    # copy of the turn tells (the views read it just before, for the owner check; one query fewer):
    # if it is stale, the turn was judged in between, and the week's batch is read (or made, if
    # this is the week's first judgement) for nothing; the retry is answered as below.
    batch = None if turn.submitted_at is not None else batch_for(now)
    # The turn and its dialogue locked, with its two responses, in one statement (selectors.locked_turn): the
    # caller can serialize the returned turn without reading it again.
    turn = locked_turn(turn.pk)
    require_owner(turn.dialogue.annotator_id, annotator)
    fields = resolve_judgement(*sides(turn), focus=turn.dialogue.focus, judgement=judgement)
    if turn.is_judged:
        stored = {name: getattr(turn, name) for name in JUDGEMENT_FIELDS}
        if stored == fields:
            return turn, False
        raise JudgementConflict("This turn is already judged, differently; a judgement cannot be changed.")
    if turn.dialogue.status != Dialogue.Status.ACTIVE:
        raise ValidationError("This dialogue has ended; its last pair can no longer be judged.")
    a, b = sides(turn)
    if a.status not in Generation.FINISHED or b.status not in Generation.FINISHED:
        raise ValidationError("Wait until both responses are complete before judging.")
    if Generation.Status.FAILED in (a.status, b.status) and not judgement.both_unusable:
        raise ValidationError("A response failed: retry it, or mark both unusable.")
    spent = judgement.time_spent_ms
    if spent is None or not 0 <= spent <= MAX_TIME_SPENT_MS:
        shown = max((g.finished_at or g.updated_at for g in (a, b)), default=now)
        spent = int((now - shown).total_seconds() * 1000)
    for name, value in fields.items():
        setattr(turn, name, value)
    turn.time_spent_ms = max(0, spent)
    turn.submitted_at = now
    turn.batch = batch
    turn.save(update_fields=[*JUDGEMENT_FIELDS, "time_spent_ms", "submitted_at", "batch"])
    Dialogue.objects.filter(pk=turn.dialogue_id).update(updated_at=now)

    judgement_stored.send(sender=Turn, turn=turn)
    return turn, True
