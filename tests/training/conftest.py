"""Preference data for training tests: frozen batches whose preferred responses carry a learnable
property, built through the annotation services (the model's answers are written as the sampling
worker would write them)."""

import random

import pytest
from django.utils import timezone

from accounts.services import user_create
from annotation import services as annotation
from annotation.batches import batch_freeze
from annotation.models import Batch
from annotation.services import Judgement
from modelserving.models import Generation
from training.models import Checkpoint
from training.services import checkpoint_register

PASSWORD = "a-long-password-9"
TOPICS = ["tea", "rain", "maps", "bread", "chess", "music", "rivers", "stars"]
STRENGTHS = ["significantly_better", "better", "slightly_better", "negligibly_better"]


def good_answer(topic: str) -> str:
    return f"Gladly! Here is something lovely about {topic}, thank you."


def bad_answer(rng: random.Random) -> str:
    return rng.choice(["No.", "Whatever.", "Ask someone else."])


@pytest.fixture
def researcher():
    return user_create(username="res", password=PASSWORD, role="researcher")


@pytest.fixture
def preference_batch(variant_factory, monkeypatch, settings):
    """make(helpfulness=n, safety=m) → a frozen batch of n + m judged turns, 25 % held out."""
    monkeypatch.setattr("modelserving.tasks.generation_sample.delay_on_commit", lambda *args: None)
    settings.HELD_OUT_SHARE = 0.25
    variant_factory("cool", base_url="http://127.0.0.1:9/v1", model_name="m")
    variant_factory("warm", base_url="http://127.0.0.1:9/v1", model_name="m")
    annotator = user_create(username="ann", password=PASSWORD, role="annotator")
    admin = user_create(username="adm", password=PASSWORD, role="admin")

    def make(*, helpfulness: int, safety: int = 0, seed: int = 0) -> Batch:
        rng = random.Random(seed)
        for index in range(helpfulness + safety):
            focus = "helpfulness" if index < helpfulness else "safety"
            topic = rng.choice(TOPICS)
            dialogue = annotation.dialogue_start(annotator=annotator, focus=focus)
            turn = annotation.turn_post(dialogue=dialogue, annotator=annotator, user_message=f"Tell me about {topic}.")
            good_side = rng.choice("AB")
            for generation in turn.pair.generations.all():
                side = "A" if generation.pk == turn.left_generation_id else "B"
                Generation.objects.filter(pk=generation.pk).update(
                    status=Generation.Status.DONE, finished_at=timezone.now(),
                    text=good_answer(topic) if side == good_side else bad_answer(rng))
            safe = {"safe_a": good_side == "A", "safe_b": good_side == "B"} if focus == "safety" else {}
            annotation.judgement_submit(turn=turn, annotator=annotator, judgement=Judgement(
                choice=good_side, strength=STRENGTHS[index % 4], **safe))
        batch = Batch.objects.get(status=Batch.Status.OPEN)
        return batch_freeze(batch=batch, admin=admin)

    return make


@pytest.fixture
def tiny_base(tiny_model_dir):
    return checkpoint_register(name="tiny-llama", kind=Checkpoint.Kind.POLICY, path=tiny_model_dir)


# Settings under which the tiny model learns the property in a few seconds on CPU.
FAST = {"learning_rate": 3e-3, "epochs": 3, "max_length": 128, "batch_size": 8, "per_device_batch_size": 8}
