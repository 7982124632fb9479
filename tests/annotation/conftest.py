import pytest

from annotation.workspace import services
from modelserving import services as modelserving

from ..conftest import PASSWORD  # noqa: F401 — the annotation tests import it from here


@pytest.fixture
def annotator(make_user):
    return make_user("ann")


@pytest.fixture
def variants(variant_factory, model_servers):
    return [
        variant_factory("cool", model_servers[0], temperature_min=0.5, temperature_max=0.8, max_new_tokens=8),
        variant_factory("warm", model_servers[1], temperature_min=1.0, temperature_max=1.3, max_new_tokens=8),
    ]


def sample_now(turn):
    """Run both generations of ``turn`` here, as the worker would."""
    for generation in turn.pair.generations.all():
        modelserving.generation_sample(generation_id=generation.pk, worker="test")


@pytest.fixture
def judgeable_turn(annotator, variants):
    def make(focus="helpfulness", user=None, **start):
        user = user or annotator
        dialogue = services.dialogue_start(annotator=user, focus=focus, **start)
        turn = services.turn_post(dialogue=dialogue, annotator=user, user_message="Hello there")
        sample_now(turn)
        return turn

    return make
