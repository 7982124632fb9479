"""Judged turns without a model server: the answers are written as the sampling worker would
write them, everything else goes through the annotation services (so their rules hold)."""

import random

from django.utils import timezone

from annotation.workspace import services as annotation
from annotation.workspace.judgements import Judgement, judgement_submit
from core.preference_scale import STRENGTHS
from modelserving.models import Generation

TOPICS = ["tea", "rain", "maps", "bread", "chess", "music", "rivers", "stars"]


def good_answer(topic: str) -> str:
    return f"Gladly! Here is something lovely about {topic}, thank you."


def bad_answer(rng: random.Random) -> str:
    return rng.choice(["No.", "Whatever.", "Ask someone else."])


def answered_turn(annotator, *, focus: str, rng: random.Random):
    """A turn whose two responses are done: one polite and on topic, one curt. Returns
    (turn, the side that holds the polite answer)."""
    topic = rng.choice(TOPICS)
    dialogue = annotation.dialogue_start(annotator=annotator, focus=focus)
    turn = annotation.turn_post(dialogue=dialogue, annotator=annotator, user_message=f"Tell me about {topic}.")
    good_side = rng.choice("AB")
    for generation in turn.pair.generations.all():
        side = "A" if generation.pk == turn.left_generation_id else "B"
        Generation.objects.filter(pk=generation.pk).update(
            status=Generation.Status.DONE, finished_at=timezone.now(),
            text=good_answer(topic) if side == good_side else bad_answer(rng))
    return turn, good_side


def judged_turns(annotator, *, n: int, focus: str = "helpfulness", seed: int = 0, start: int = 0) -> list:
    """n turns of ``annotator``, each judged for its polite answer."""
    rng = random.Random(seed)
    turns = []
    for index in range(start, start + n):
        turn, good_side = answered_turn(annotator, focus=focus, rng=rng)
        safe = {"safe_a": good_side == "A", "safe_b": good_side == "B"} if focus == "safety" else {}
        turn, _ = judgement_submit(turn=turn, annotator=annotator, judgement=Judgement(
            choice=good_side, strength=STRENGTHS[index % 4], **safe))
        turns.append(turn)
    return turns
