import random

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from annotation.models import AttackVector, Batch, Dialogue, RiskCategory, SafetyBin, Strength, Turn
from annotation.workspace import judgements, services
from annotation.workspace.judgements import Judgement, JudgementConflict
from annotation.workspace.selectors import dialogue_context, sides
from modelserving.models import Generation

from ..helpers.preferences import answered_turn
from .conftest import sample_now

pytestmark = pytest.mark.django_db

A_BETTER = Judgement(choice="A", strength=Strength.BETTER)


def test_the_papers_risk_categories_and_attack_vectors_are_seeded():
    assert {"Illicit and criminal activities", "Hateful and harmful activities", "Unqualified advice"} <= set(
        RiskCategory.objects.values_list("name", flat=True))
    assert {"psychological-manipulation", "logic-manipulation", "syntactic-manipulation",
            "semantic-manipulation", "perspective-manipulation", "other"} <= set(
        AttackVector.objects.values_list("slug", flat=True))


def test_dialogue_start_records_the_active_guideline(annotator, offline_variants):
    dialogue = services.dialogue_start(annotator=annotator, focus="safety")
    assert dialogue.guideline.focus == "safety" and dialogue.guideline.is_active


def test_red_team_tags_belong_to_the_safety_focus(annotator, offline_variants):
    risk, vector = RiskCategory.objects.first(), AttackVector.objects.first()
    with pytest.raises(ValidationError, match="belong to the safety focus"):
        services.dialogue_start(annotator=annotator, focus="helpfulness", risk_category=risk, attack_vector=vector)
    with pytest.raises(ValidationError, match="both a risk category and an attack vector"):
        services.dialogue_start(annotator=annotator, focus="safety", risk_category=risk)
    dialogue = services.dialogue_start(annotator=annotator, focus="safety", risk_category=risk, attack_vector=vector)
    assert dialogue.is_adversarial
    assert Dialogue.objects.count() == 1


def test_only_annotators_start_dialogues(make_user):
    with pytest.raises(PermissionDenied):
        services.dialogue_start(annotator=make_user("res", "researcher"), focus="helpfulness")


def test_turn_post_requests_a_pair_for_the_context_and_draws_the_sides(annotator, variants, settings):
    settings.MAX_IN_FLIGHT_PER_USER = 20  # eleven dialogues with a pair in flight each
    dialogue = services.dialogue_start(annotator=annotator, focus="helpfulness", system_prompt="Be brief.")
    lefts = set()
    turn = services.turn_post(dialogue=dialogue, annotator=annotator, user_message="  Hi!  ", rng=random.Random(1))
    assert turn.index == 0 and turn.user_message == "Hi!"
    for generation in turn.pair.generations.all():
        assert generation.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    lefts.add(turn.left_generation.position)
    for seed in range(2, 12):
        other = services.dialogue_start(annotator=annotator, focus="helpfulness")
        lefts.add(services.turn_post(dialogue=other, annotator=annotator, user_message="x",
                                     rng=random.Random(seed)).left_generation.position)
    assert lefts == {1, 2}, "either generation can be shown on the left"


def test_an_empty_message_is_refused_and_stores_nothing(annotator, variants):
    dialogue = services.dialogue_start(annotator=annotator, focus="helpfulness")
    with pytest.raises(ValidationError, match="Write a message first"):
        services.turn_post(dialogue=dialogue, annotator=annotator, user_message="   ")
    assert not Turn.objects.exists() and not Generation.objects.exists()


def test_no_next_message_before_the_current_pair_is_judged(judgeable_turn, annotator):
    turn = judgeable_turn()
    with pytest.raises(ValidationError, match="Judge the current pair"):
        services.turn_post(dialogue=turn.dialogue, annotator=annotator, user_message="more")
    assert Turn.objects.count() == 1


def test_no_judgement_before_both_responses_are_done(annotator, variants):
    dialogue = services.dialogue_start(annotator=annotator, focus="helpfulness")
    turn = services.turn_post(dialogue=dialogue, annotator=annotator, user_message="Hi")
    with pytest.raises(ValidationError, match="Wait until both responses are complete"):
        judgements.judgement_submit(turn=turn, annotator=annotator, judgement=A_BETTER)
    turn.refresh_from_db()
    assert not turn.is_judged


def test_strength_and_choice_are_required(judgeable_turn, annotator):
    turn = judgeable_turn()
    with pytest.raises(ValidationError, match="how much better"):
        judgements.judgement_submit(turn=turn, annotator=annotator, judgement=Judgement(choice="A"))
    with pytest.raises(ValidationError, match="which response is better"):
        judgements.judgement_submit(turn=turn, annotator=annotator, judgement=Judgement(strength=Strength.BETTER))


def test_a_judgement_is_stored_with_the_chosen_generation_and_its_weeks_batch(judgeable_turn, annotator):
    turn = judgeable_turn()
    stored, created = judgements.judgement_submit(
        turn=turn, annotator=annotator, judgement=Judgement(choice="B", strength=Strength.SLIGHTLY_BETTER))
    a, b = sides(stored)
    assert created and stored.chosen_generation_id == b.id and stored.strength == "slightly_better"
    assert stored.safety_bin == "" and stored.time_spent_ms is not None
    iso = stored.submitted_at.isocalendar()
    assert (stored.batch.iso_year, stored.batch.iso_week) == (iso[0], iso[1])
    assert Batch.objects.count() == 1


def test_nobody_judges_another_annotators_turn(judgeable_turn, make_user):
    turn = judgeable_turn()
    intruder = make_user("eve")
    with pytest.raises(PermissionDenied):
        judgements.judgement_submit(turn=turn, annotator=intruder, judgement=A_BETTER)
    with pytest.raises(PermissionDenied):
        services.turn_post(dialogue=turn.dialogue, annotator=intruder, user_message="hi")
    with pytest.raises(PermissionDenied):
        services.dialogue_finish(dialogue=turn.dialogue, annotator=intruder)
    turn.refresh_from_db()
    assert not turn.is_judged


def test_a_repeated_identical_submission_returns_the_stored_judgement(judgeable_turn, annotator):
    # A double click or a network retry sends the same judgement twice.
    turn = judgeable_turn()
    first, created = judgements.judgement_submit(turn=turn, annotator=annotator, judgement=A_BETTER)
    again, created_again = judgements.judgement_submit(turn=turn, annotator=annotator,
                                                     judgement=Judgement(choice="A", strength="better",
                                                                         time_spent_ms=99999))
    assert created and not created_again
    assert again.submitted_at == first.submitted_at and again.time_spent_ms == first.time_spent_ms


def test_a_different_second_judgement_is_refused(judgeable_turn, annotator):
    turn = judgeable_turn()
    judgements.judgement_submit(turn=turn, annotator=annotator, judgement=A_BETTER)
    with pytest.raises(JudgementConflict, match="already judged"):
        judgements.judgement_submit(turn=turn, annotator=annotator,
                                  judgement=Judgement(choice="B", strength=Strength.BETTER))
    turn.refresh_from_db()
    assert turn.chosen_generation_id == sides(turn)[0].id


def test_safety_focus_requires_both_labels(judgeable_turn, annotator):
    turn = judgeable_turn("safety")
    with pytest.raises(ValidationError, match="Label both responses"):
        judgements.judgement_submit(turn=turn, annotator=annotator,
                                  judgement=Judgement(choice="A", strength="better", safe_a=True))


@pytest.mark.parametrize("choice, safe_a, safe_b, expected", [
    ("A", True, False, SafetyBin.CHOSEN_SAFE_OTHER_UNSAFE),
    ("B", False, True, SafetyBin.CHOSEN_SAFE_OTHER_UNSAFE),
    ("A", True, True, SafetyBin.BOTH_SAFE),
    ("B", False, False, SafetyBin.BOTH_UNSAFE),
])
def test_safety_bin_is_derived_from_the_labels(judgeable_turn, annotator, choice, safe_a, safe_b, expected):
    turn = judgeable_turn("safety")
    stored, _ = judgements.judgement_submit(turn=turn, annotator=annotator, judgement=Judgement(
        choice=choice, strength="better", safe_a=safe_a, safe_b=safe_b))
    assert stored.safety_bin == expected


def test_choosing_the_unsafe_response_over_a_safe_one_is_refused_with_the_reason(judgeable_turn, annotator):
    turn = judgeable_turn("safety")
    with pytest.raises(ValidationError, match="A safe response is always preferred"):
        judgements.judgement_submit(turn=turn, annotator=annotator, judgement=Judgement(
            choice="A", strength="better", safe_a=False, safe_b=True))
    turn.refresh_from_db()
    assert not turn.is_judged and turn.batch is None


def test_both_unusable_needs_a_reason_and_no_winner(judgeable_turn, annotator):
    turn = judgeable_turn()
    with pytest.raises(ValidationError, match="Say why"):
        judgements.judgement_submit(turn=turn, annotator=annotator, judgement=Judgement(both_unusable=True))
    with pytest.raises(ValidationError, match="no winner"):
        judgements.judgement_submit(turn=turn, annotator=annotator, judgement=Judgement(
            both_unusable=True, unusable_reason="gibberish", choice="A", strength="better"))
    stored, _ = judgements.judgement_submit(turn=turn, annotator=annotator, judgement=Judgement(
        both_unusable=True, unusable_reason="both are gibberish"))
    assert stored.both_unusable and stored.chosen_generation is None
    with pytest.raises(ValidationError, match="nothing to continue from"):
        services.turn_post(dialogue=turn.dialogue, annotator=annotator, user_message="next")


def test_continue_makes_the_chosen_response_the_assistant_turn(judgeable_turn, annotator):
    turn = judgeable_turn()
    with pytest.raises(ValidationError, match="Judge the current pair before writing the next message"):
        services.turn_post(dialogue=turn.dialogue, annotator=annotator, user_message="x")
    judged, _ = judgements.judgement_submit(turn=turn, annotator=annotator,
                                          judgement=Judgement(choice="B", strength="significantly_better"))
    chosen = judged.chosen_generation
    second = services.turn_post(dialogue=turn.dialogue, annotator=annotator, user_message="And then?")
    assert second.index == 1
    expected = [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": chosen.text},
                {"role": "user", "content": "And then?"}]
    for generation in second.pair.generations.all():
        assert generation.messages == expected and generation.request_body["messages"] == expected
    sample_now(second)
    judgements.judgement_submit(turn=second, annotator=annotator, judgement=A_BETTER)
    assert dialogue_context(dialogue=turn.dialogue)[-1]["role"] == "assistant"


def test_finish_ends_the_dialogue_and_its_last_pair_can_no_longer_be_judged(judgeable_turn, annotator):
    turn = judgeable_turn()
    dialogue = services.dialogue_finish(dialogue=turn.dialogue, annotator=annotator)
    assert dialogue.status == Dialogue.Status.ABANDONED, "nothing was judged"
    with pytest.raises(ValidationError, match="has ended"):
        judgements.judgement_submit(turn=turn, annotator=annotator, judgement=A_BETTER)
    with pytest.raises(ValidationError, match="has ended"):
        services.turn_post(dialogue=dialogue, annotator=annotator, user_message="hi")


def test_finish_after_a_judgement_marks_the_dialogue_finished(judgeable_turn, annotator):
    turn = judgeable_turn()
    judgements.judgement_submit(turn=turn, annotator=annotator, judgement=A_BETTER)
    assert services.dialogue_finish(dialogue=turn.dialogue, annotator=annotator).status == "finished"


def test_generation_retry_requeues_a_failed_response(annotator, variant_factory, model_server):
    variant_factory("broken", model_server, model_name="not-served")
    dialogue = services.dialogue_start(annotator=annotator, focus="helpfulness")
    turn = services.turn_post(dialogue=dialogue, annotator=annotator, user_message="Hi")
    sample_now(turn)
    a, _ = sides(turn)
    a.refresh_from_db()
    assert a.status == "failed" and "refused the request" in a.error
    retried = services.generation_retry(turn=turn, annotator=annotator, side="A")
    assert retried.status == "queued" and retried.error == ""


def test_an_empty_response_cannot_be_chosen_but_both_can_be_marked_unusable(annotator, offline_variants):
    # The chosen response becomes the next turn's context; an empty one would strand the dialogue.
    turn, _ = answered_turn(annotator, focus="helpfulness", rng=random.Random(1))
    a, b = sides(turn)
    Generation.objects.filter(pk=a.pk).update(text="   ")
    with pytest.raises(ValidationError, match="you chose is empty"):
        judgements.judgement_submit(turn=turn, annotator=annotator, judgement=A_BETTER)
    judgements.judgement_submit(turn=turn, annotator=annotator, judgement=Judgement(choice="B", strength="better"))
    assert Turn.objects.get(pk=turn.pk).chosen_generation_id == b.pk


def test_a_pair_with_a_failed_response_can_be_marked_both_unusable(annotator, offline_variants):
    turn, _ = answered_turn(annotator, focus="helpfulness", rng=random.Random(2))
    a, _ = sides(turn)
    Generation.objects.filter(pk=a.pk).update(status=Generation.Status.FAILED, error="The server is down.")
    with pytest.raises(ValidationError, match="A response failed"):
        judgements.judgement_submit(turn=turn, annotator=annotator, judgement=A_BETTER)
    judgements.judgement_submit(turn=turn, annotator=annotator,
                              judgement=Judgement(both_unusable=True, unusable_reason="one failed, one curt"))
    assert Turn.objects.get(pk=turn.pk).both_unusable
