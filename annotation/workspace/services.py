"""Dialogues and their turns: start, write the next message (a pair is sampled for it), retry a
failed response, finish. Rules live here only; judgements are in judgements.py, the batch a
judgement lands in in annotation/batches/services.py (which also gives the one lock order)."""

from __future__ import annotations

import random

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.roles import ANNOTATOR, has_role
from core.exceptions import Conflict
from modelserving import services as modelserving
from modelserving.models import Generation

from ..models import AttackVector, Dialogue, Focus, Guideline, RiskCategory, Turn
from ..text import MAX_MESSAGE_CHARS, clean_text
from .selectors import dialogue_context, sides


def require_owner(annotator_id: int, annotator) -> None:
    """The last line of the owner rule (views and the API filter by owner first and answer 404)."""
    if annotator_id != annotator.id:
        raise PermissionDenied("Only the annotator who wrote this dialogue may act on it.")


def _locked_dialogue(dialogue: Dialogue, annotator) -> Dialogue:
    dialogue = Dialogue.objects.select_for_update().get(pk=dialogue.pk)
    require_owner(dialogue.annotator_id, annotator)
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
        raise ValidationError({"attack_vector": "An adversarial prompt needs both a risk category "
                                                "and an attack vector."})
    for tag in (risk_category, attack_vector):
        if tag is not None and not tag.is_active:
            raise ValidationError(f"{tag.name!r} is no longer offered.")
    system_prompt = clean_text(system_prompt, field="system_prompt", limit=MAX_MESSAGE_CHARS, what="the system prompt")
    # A dialogue that could get no pair is refused now (503), not at its first message.
    modelserving.sampling_check()
    return Dialogue.objects.create(
        annotator=annotator, focus=focus, system_prompt=system_prompt,
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
    return clean_text(text, field="user_message", limit=MAX_MESSAGE_CHARS, what="a message",
                      empty="Write a message first.")


@transaction.atomic
def turn_post(*, dialogue: Dialogue, annotator, user_message: str, rng: random.Random | None = None) -> Turn:
    """Append the annotator's message and request a pair for it, sides drawn at random: the first
    message of a dialogue, or the next one after a judgement (the chosen response then becomes the
    assistant's turn). One flow for pages and API alike.

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


@transaction.atomic
def generation_retry(*, turn: Turn, annotator, side: str) -> Generation:
    # The turn's lock, held until the retry is queued: a judgement of this turn ("both unusable")
    # waits for it and then sees a response that is queued again, or the retry sees the judgement.
    turn = (Turn.objects.select_for_update(of=("self",)).select_related("dialogue", "pair")
            .prefetch_related("pair__generations").get(pk=turn.pk))
    require_owner(turn.dialogue.annotator_id, annotator)
    if turn.is_judged:
        raise ValidationError("This turn is already judged.")
    if side not in ("A", "B"):
        raise ValidationError("Retry response A or B.")
    generation = sides(turn)[0 if side == "A" else 1]
    return modelserving.generation_requeue(generation=generation)
