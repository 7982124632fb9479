"""Demonstrations (SFT data): a prompt and the ideal answer an annotator writes, or their rewrite
of the response they chose in a judged turn. They join the week's batch like judgements."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.roles import ANNOTATOR, has_role

from ..batches.services import batch_for
from ..models import Demonstration, Turn
from ..text import MAX_ANSWER_CHARS, MAX_MESSAGE_CHARS, clean_text
from ..workspace.services import require_owner


def _clean_answer(text: str) -> str:
    return clean_text(text, field="answer", limit=MAX_ANSWER_CHARS, what="an answer", empty="Write the ideal answer.")


@transaction.atomic
def demonstration_write(*, annotator, prompt: str, answer: str, system_prompt: str = "") -> Demonstration:
    """A prompt and the ideal answer to it, written by the annotator."""
    if not has_role(annotator, ANNOTATOR):
        raise PermissionDenied("Only annotators write demonstrations.")
    prompt = clean_text(prompt, field="prompt", limit=MAX_MESSAGE_CHARS, what="a message",
                        empty="Write the prompt first.")
    answer = _clean_answer(answer)
    system_prompt = clean_text(system_prompt, field="system_prompt", limit=MAX_MESSAGE_CHARS, what="the system prompt")
    context = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
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
    require_owner(turn.dialogue.annotator_id, annotator)
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
