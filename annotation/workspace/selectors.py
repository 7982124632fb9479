"""The workspace's reads, one selector per fact. Pages, the API and the services all read through
these; whether a selector is a queryset or one of the judgement path's hand-written statements
(hot_path.py: the next turn, the owner's turn, the owner check, the locked turn) is its own
business."""

from django.db.models import Prefetch
from django.utils import timezone

from core.exceptions import NotYours
from modelserving.models import Generation

from ..models import Dialogue, Turn
from . import hot_path


def dialogue_context(*, dialogue: Dialogue, before_index: int | None = None) -> list[dict]:
    """The messages a model sees: the system prompt, then each earlier user turn and the response
    chosen for it. Only turns judged with a chosen response are context."""
    messages = [{"role": "system", "content": dialogue.system_prompt}] if dialogue.system_prompt else []
    turns = dialogue.turns.select_related("chosen_generation").order_by("index")
    if before_index is not None:
        turns = turns.filter(index__lt=before_index)
    for turn in turns:
        messages.append({"role": "user", "content": turn.user_message})
        if turn.chosen_generation is not None:
            messages.append({"role": "assistant", "content": turn.chosen_generation.text})
    return messages


def turns_with_pairs():
    return Turn.objects.select_related("dialogue", "pair", "chosen_generation", "batch").prefetch_related(
        Prefetch("pair__generations", queryset=Generation.objects.order_by("position"))
    )


def sides(turn: Turn) -> tuple[Generation, Generation]:
    """(A, B): the generation shown on the left, then the other (read with the turn by the judgement
    path's statements, hot_path.py, or through its pair)."""
    generations = turn.__dict__.get("pair_generations") or list(turn.pair.generations.all())
    left = next(g for g in generations if g.id == turn.left_generation_id)
    right = next(g for g in generations if g.id != turn.left_generation_id)
    return left, right


def next_turn(*, annotator) -> Turn | None:
    """The annotator's oldest turn that waits for a judgement, in an active dialogue, whose two
    responses are done; with them (one statement, through the pending-turns index)."""
    return hot_path.next_turn_for(annotator=annotator)


def locked_turn(pk: int) -> Turn:
    """Turn ``pk`` and its dialogue, locked until the transaction ends, with its two responses and
    its focus's overlap policy (Turn.DoesNotExist for no such turn). Call inside a transaction,
    after any batch lock (the one lock order)."""
    return hot_path.locked_turn(pk)


def history_for(*, annotator):
    return turns_with_pairs().filter(dialogue__annotator=annotator, submitted_at__isnull=False).order_by(
        "-submitted_at", "-id")


def judged_today_count(*, annotator) -> int:
    start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    return Turn.objects.filter(dialogue__annotator=annotator, submitted_at__gte=start).count()


def active_dialogues_for(*, annotator):
    return Dialogue.objects.filter(annotator=annotator, status=Dialogue.Status.ACTIVE).order_by("-updated_at")


def own_dialogue(*, annotator, pk: int) -> Dialogue:
    """The annotator's dialogue ``pk``; NotYours (404 through pages and API alike) when it is
    unknown or someone else's."""
    dialogue = Dialogue.objects.select_related("risk_category", "attack_vector", "guideline").filter(
        pk=pk, annotator=annotator).first()
    if dialogue is None:
        raise NotYours
    return dialogue


def own_turn(*, annotator, pk: int) -> Turn:
    """The annotator's turn ``pk`` with its dialogue and two responses; NotYours (404) when it is
    unknown or someone else's."""
    turn = hot_path.own_turn(annotator=annotator, pk=pk)
    if turn is None:
        raise NotYours
    return turn


def own_turn_bare(*, annotator, pk: int) -> Turn:
    """The annotator's turn ``pk`` (its id, dialogue and whether it is judged); NotYours (404): the
    owner check before a service reads the turn locked."""
    turn = hot_path.own_turn_bare(annotator=annotator, pk=pk)
    if turn is None:
        raise NotYours
    return turn
