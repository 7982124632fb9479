"""Everything that can happen to a dialogue, a turn and its judgement. Rules live here only.

Locks are always taken in one order: the batch, then the turn, then its generations (as
``batch_freeze`` does: the batch, then its turns), so no two operations can wait on each other.
"""

from __future__ import annotations

import random
from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.utils import timezone

from accounts.roles import ANNOTATOR, has_role
from core.exceptions import Conflict
from modelserving import services as modelserving
from modelserving.models import Generation

from ..models import (
    AttackVector,
    Batch,
    Demonstration,
    Dialogue,
    Focus,
    Guideline,
    RiskCategory,
    Turn,
)
from .hot_path import locked_turn
from .judgements import JUDGEMENT_FIELDS, MAX_TIME_SPENT_MS, Judgement, resolve_judgement
from .review import overlap_schedule
from .selectors import dialogue_context, sides

MAX_MESSAGE_CHARS = 20_000


class JudgementConflict(Conflict):
    """A second, different judgement of a turn that is already judged."""


def _own(obj_annotator_id: int, annotator) -> None:
    if obj_annotator_id != annotator.id:
        # Views and the API filter by owner first and answer 404; this is the last line.
        raise PermissionDenied("Only the annotator who wrote this dialogue may act on it.")


def _locked_dialogue(dialogue: Dialogue, annotator) -> Dialogue:
    dialogue = Dialogue.objects.select_for_update().get(pk=dialogue.pk)
    _own(dialogue.annotator_id, annotator)
    return dialogue


# --- Dialogues ------------------------------------------------------------------------------


def dialogue_start(*, annotator, focus: str, system_prompt: str = "", risk_category: RiskCategory | None = None,
                   attack_vector: AttackVector | None = None) -> Dialogue:
    if not has_role(annotator, ANNOTATOR):
        raise PermissionDenied("Only annotators start dialogues.")
    if focus not in Focus.values:
        raise ValidationError({"focus": "Choose helpfulness or safety."})
    if focus != Focus.SAFETY and (risk_category or attack_vector):
        raise ValidationError({"risk_category": "Risk categories and attack vectors belong to the safety focus."})
    if (risk_category is None) != (attack_vector is None):
        raise ValidationError({"attack_vector": "An adversarial prompt needs both a risk category and an attack vector."})
    for tag in (risk_category, attack_vector):
        if tag is not None and not tag.is_active:
            raise ValidationError(f"{tag.name!r} is no longer offered.")
    if len(system_prompt) > MAX_MESSAGE_CHARS:
        raise ValidationError({"system_prompt": f"Keep the system prompt under {MAX_MESSAGE_CHARS} characters."})
    # A dialogue that could get no pair is refused now (503), not at its first message.
    modelserving.sampling_check()
    return Dialogue.objects.create(
        annotator=annotator, focus=focus, system_prompt=system_prompt.strip(),
        guideline=Guideline.objects.filter(focus=focus, is_active=True).first(),
        risk_category=risk_category, attack_vector=attack_vector,
    )


@transaction.atomic
def dialogue_finish(*, dialogue: Dialogue, annotator) -> Dialogue:
    dialogue = _locked_dialogue(dialogue, annotator)
    if dialogue.status == Dialogue.Status.ACTIVE:
        has_judged = dialogue.turns.filter(submitted_at__isnull=False).exists()
        dialogue.status = Dialogue.Status.FINISHED if has_judged else Dialogue.Status.ABANDONED
        dialogue.finished_at = timezone.now()
        dialogue.save(update_fields=["status", "finished_at", "updated_at"])
    return dialogue


# --- Turns ----------------------------------------------------------------------------------


def _clean_message(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ValidationError({"user_message": "Write a message first."})
    if len(text) > MAX_MESSAGE_CHARS:
        raise ValidationError({"user_message": f"Keep a message under {MAX_MESSAGE_CHARS} characters."})
    return text


@transaction.atomic
def turn_post(*, dialogue: Dialogue, annotator, user_message: str, rng: random.Random | None = None) -> Turn:
    """Append the annotator's message and request a pair for it, sides drawn at random.

    The context sent to the models is the system prompt, every earlier user message and the
    response chosen for it; it is stored with both generations.
    """
    message = _clean_message(user_message)
    dialogue = _locked_dialogue(dialogue, annotator)
    if dialogue.status != Dialogue.Status.ACTIVE:
        raise Conflict("This dialogue has ended; start a new one.")
    last = dialogue.turns.order_by("-index").first()
    if last is not None and not last.is_judged:
        raise Conflict("Judge the current pair before writing the next message.")
    if last is not None and last.chosen_generation_id is None:
        raise Conflict("Both responses of the last turn were unusable: there is nothing to continue from. "
                       "End this dialogue and start a new one.")
    context = dialogue_context(dialogue=dialogue) + [{"role": "user", "content": message}]
    pair = modelserving.pair_request(messages=context, requested_by=annotator)
    generations = list(pair.generations.all())
    turn = Turn.objects.create(
        dialogue=dialogue, index=0 if last is None else last.index + 1, user_message=message, pair=pair,
        left_generation=(rng or random.SystemRandom()).choice(generations),
    )
    dialogue.save(update_fields=["updated_at"])
    return turn


def dialogue_continue(*, dialogue: Dialogue, annotator, user_message: str) -> Turn:
    """After a judgement: the chosen response becomes the assistant turn, and the next user message
    opens a new comparison."""
    last = dialogue.turns.order_by("-index").first()
    if last is None or not last.is_judged:
        raise ValidationError("There is no judged turn to continue from.")
    return turn_post(dialogue=dialogue, annotator=annotator, user_message=user_message)


@transaction.atomic
def generation_retry(*, turn: Turn, annotator, side: str) -> Generation:
    # The turn's lock, held until the retry is queued: a judgement of this turn ("both unusable")
    # waits for it and then sees a response that is queued again, or the retry sees the judgement.
    turn = (Turn.objects.select_for_update(of=("self",)).select_related("dialogue", "pair")
            .prefetch_related("pair__generations").get(pk=turn.pk))
    _own(turn.dialogue.annotator_id, annotator)
    if turn.is_judged:
        raise ValidationError("This turn is already judged.")
    if side not in ("A", "B"):
        raise ValidationError("Retry response A or B.")
    generation = sides(turn)[0 if side == "A" else 1]
    return modelserving.generation_requeue(generation=generation)


# --- Judgements -----------------------------------------------------------------------------


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
    # The turn and its dialogue locked, with its two responses, in one statement (hot_path.py): the
    # caller can serialize the returned turn without reading it again.
    turn = locked_turn(turn.pk)
    _own(turn.dialogue.annotator_id, annotator)
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

    overlap_schedule(turn=turn)
    return turn, True


# --- Demonstrations (SFT data) ----------------------------------------------------------------

MAX_ANSWER_CHARS = 40_000


def _clean_answer(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ValidationError({"answer": "Write the ideal answer."})
    if len(text) > MAX_ANSWER_CHARS:
        raise ValidationError({"answer": f"Keep an answer under {MAX_ANSWER_CHARS} characters."})
    return text


@transaction.atomic
def demonstration_write(*, annotator, prompt: str, answer: str, system_prompt: str = "") -> Demonstration:
    """A prompt and the ideal answer to it, written by the annotator."""
    if not has_role(annotator, ANNOTATOR):
        raise PermissionDenied("Only annotators write demonstrations.")
    try:
        prompt = _clean_message(prompt)
    except ValidationError:
        raise ValidationError({"prompt": "Write the prompt first."}) from None
    answer = _clean_answer(answer)
    if len(system_prompt or "") > MAX_MESSAGE_CHARS:
        raise ValidationError({"system_prompt": f"Keep the system prompt under {MAX_MESSAGE_CHARS} characters."})
    system_prompt = system_prompt or ""
    context = ([{"role": "system", "content": system_prompt.strip()}] if system_prompt.strip() else []) + [
        {"role": "user", "content": prompt}]
    return Demonstration.objects.create(annotator=annotator, kind=Demonstration.Kind.WRITTEN, context=context,
                                        answer=answer, batch=batch_for(timezone.now()))


@transaction.atomic
def demonstration_rewrite(*, annotator, turn: Turn, answer: str) -> Demonstration:
    """The annotator's rewrite of the response they chose in one of their judged turns: the same
    context, a better answer."""
    batch = batch_for(timezone.now())  # before the turn's lock: the one lock order
    turn = (Turn.objects.select_for_update(of=("self",)).select_related("dialogue", "chosen_generation")
            .get(pk=turn.pk))
    _own(turn.dialogue.annotator_id, annotator)
    if not turn.is_judged or turn.chosen_generation is None:
        raise ValidationError("Only a judged turn with a chosen response can be rewritten.")
    if Demonstration.objects.filter(turn=turn).exists():
        raise ValidationError("This turn's chosen response has been rewritten already.")
    answer = _clean_answer(answer)
    original = turn.chosen_generation.text
    if answer == original.strip():
        raise ValidationError({"answer": "The rewrite is the same as the chosen response: improve it first."})
    return Demonstration.objects.create(annotator=annotator, kind=Demonstration.Kind.REWRITE,
                                        context=turn.chosen_generation.messages, answer=answer, turn=turn,
                                        original=original, batch=batch)
