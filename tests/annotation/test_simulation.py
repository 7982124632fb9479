import random
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.roles import ANNOTATOR, has_role
from annotation.models import Strength, Turn
from annotation.workspace.selectors import sides
from annotation.workspace.simulation import (
    DEFAULT_THRESHOLDS,
    STRENGTHS,
    PreferenceModel,
    SimulationError,
    keyword_preference,
    length_preference,
    load_callable,
    parse_thresholds,
)
from bench.processes import free_port


def numeric_preference(context, response):
    """The response is its own score: '0.7' scores 0.7."""
    return float(response)


def marked_unsafe(context, response):
    return "UNSAFE" not in response


def judge(model, a, b, focus="helpfulness", rng=None):
    return model.judge(context=[{"role": "user", "content": "Hi"}], response_a=a, response_b=b, focus=focus,
                       rng=rng or random.Random(0))


def test_strengths_are_the_models_strengths_strongest_first():
    assert list(STRENGTHS) == [Strength.SIGNIFICANTLY_BETTER, Strength.BETTER, Strength.SLIGHTLY_BETTER,
                               Strength.NEGLIGIBLY_BETTER]


def test_without_noise_the_higher_scored_side_is_chosen_every_time():
    model = PreferenceModel(preference=numeric_preference)
    for seed in range(20):
        assert judge(model, "0.31", "0.3", rng=random.Random(seed)).payload["choice"] == "A"
        assert judge(model, "0.3", "0.31", rng=random.Random(seed)).payload["choice"] == "B"
    decision = judge(model, "2", "1")
    assert decision.payload == {"choice": "A", "strength": "significantly_better"}
    assert decision.preferred == "A" and decision.agrees and not decision.override


@pytest.mark.parametrize(("gap", "strength"), [
    (3.0, "significantly_better"), (1.0, "significantly_better"), (0.99, "better"), (0.5, "better"),
    (0.3, "slightly_better"), (0.2, "slightly_better"), (0.19, "negligibly_better"),
    (0.0, "negligibly_better"),
])
def test_the_score_gap_sets_the_strength_by_the_thresholds(gap, strength):
    model = PreferenceModel(preference=numeric_preference, thresholds=DEFAULT_THRESHOLDS)
    assert judge(model, str(gap), "0").payload["strength"] == strength
    assert judge(model, "0", str(gap)).payload["strength"] == strength


def test_custom_thresholds_recalibrate_the_strengths():
    model = PreferenceModel(preference=numeric_preference, thresholds=parse_thresholds("10,5,2"))
    assert judge(model, "9", "0").payload["strength"] == "better"
    assert judge(model, "1", "0").payload["strength"] == "negligibly_better"


def test_an_exact_tie_is_a_coin_flip_and_counts_as_no_preference():
    model = PreferenceModel(preference=numeric_preference)
    decisions = [judge(model, "1", "1", rng=random.Random(seed)) for seed in range(40)]
    assert {d.payload["choice"] for d in decisions} == {"A", "B"}
    assert {d.payload["strength"] for d in decisions} == {"negligibly_better"}
    assert all(d.preferred is None and d.agrees is None for d in decisions)


def test_noise_flips_some_near_ties_but_never_a_large_gap():
    model = PreferenceModel(preference=numeric_preference, noise=0.1)
    rng = random.Random(7)
    near = [judge(model, "1.01", "1", rng=rng) for _ in range(400)]
    flipped = sum(not d.agrees for d in near)
    assert 80 < flipped < 200, flipped  # a gap of 0.1 σ: close to a coin flip, a little towards A
    far = [judge(model, "3", "1", rng=rng) for _ in range(400)]  # a gap of 20 σ
    assert all(d.agrees for d in far)
    assert {d.payload["strength"] for d in far} == {"significantly_better"}


def test_the_same_seed_gives_the_same_judgements():
    model = PreferenceModel(preference=numeric_preference, noise=0.3)
    runs = [[judge(model, str(x / 10), "0.5", rng=rng).payload for x in range(10)]
            for rng in (random.Random("s-1"), random.Random("s-1"))]
    assert runs[0] == runs[1]


def test_safety_focus_labels_both_and_never_chooses_unsafe_over_safe():
    # The preferred response is unsafe and the other safe: the safe one is chosen (the server
    # refuses chosen-unsafe-over-safe), by a lot, and the override is recorded.
    unsafe_model = PreferenceModel(preference=lambda c, r: float(r.split()[0]), safety=marked_unsafe)
    decision = judge(unsafe_model, "5 UNSAFE", "1 fine", focus="safety")
    assert decision.payload == {"choice": "B", "strength": "significantly_better", "safe_a": False,
                                "safe_b": True}
    assert decision.override == "safety" and decision.agrees is False
    # Both unsafe, or the preferred one safe: the scores decide.
    assert judge(unsafe_model, "5 UNSAFE", "1 UNSAFE", focus="safety").payload == {
        "choice": "A", "strength": "significantly_better", "safe_a": False, "safe_b": False}
    assert judge(unsafe_model, "1.3 fine", "1 UNSAFE", focus="safety").payload == {
        "choice": "A", "strength": "slightly_better", "safe_a": True, "safe_b": False}
    # The helpfulness focus sends no safety labels.
    assert "safe_a" not in judge(unsafe_model, "5 UNSAFE", "1 fine").payload


def test_by_default_every_response_is_safe():
    model = PreferenceModel(preference=length_preference)
    assert judge(model, "short", "a longer answer", focus="safety").payload["safe_a"] is True


def test_an_empty_response_is_never_chosen_and_two_empty_ones_are_unusable():
    # A chosen empty response would become empty assistant context, which the next turn refuses.
    model = PreferenceModel(preference=lambda c, r: -len(r))  # prefers the shortest
    decision = judge(model, "  ", "some words")
    assert decision.payload["choice"] == "B" and decision.override == "blank"
    decision = judge(model, "", " \n")
    assert decision.payload == {"both_unusable": True, "unusable_reason": "Both responses are empty."}


def test_the_example_preference_functions():
    assert length_preference([], "a" * 300) > length_preference([], "a" * 100)
    assert length_preference([], "a" * 200) == 1.0
    assert keyword_preference([], "Thanks, I would gladly help; please ask.") == pytest.approx(10 * 3 / 7)
    assert keyword_preference([], "No.") == 0 and keyword_preference([], "") == 0


@pytest.mark.parametrize(("path", "message"), [
    ("length_preference", "not a dotted path"),
    ("annotation.no_such_module.fn", "Cannot import 'annotation.no_such_module'"),
    ("annotation.workspace.simulation.no_such_fn", "has no 'no_such_fn'"),
    ("annotation.workspace.simulation.DEFAULT_THRESHOLDS", "not a callable"),
    ("annotation.workspace.simulation.parse_thresholds", "must take (context, response)"),
])
def test_a_bad_dotted_path_is_refused_with_what_is_wrong(path, message):
    with pytest.raises(SimulationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_callable(path)


def test_dotted_paths_load_preference_and_safety_functions():
    model = PreferenceModel.from_paths(preference="tests.annotation.test_simulation.numeric_preference",
                                       safety="annotation.workspace.simulation.blocklist_safety", noise=0.5,
                                       thresholds="2,1,0.5")
    assert model.preference is numeric_preference
    assert model.thresholds == (2.0, 1.0, 0.5) and model.noise == 0.5
    assert not model.safety([], "Use a weapon.") and model.safety([], "Use a spoon.")


@pytest.mark.parametrize("value", ["0.2,0.5,1", "1,0.5", "1,1,0.5", "a,b,c", "1,0.5,-0.1", "inf,1,0"])
def test_thresholds_must_be_three_decreasing_gaps(value):
    with pytest.raises(SimulationError, match="three decreasing"):
        parse_thresholds(value)


@pytest.mark.parametrize(("options", "message"), [
    ({"preference": "nowhere.fn"}, "Cannot import 'nowhere'"),
    ({"safety": "annotation.workspace.simulation.nothing"}, "has no 'nothing'"),
    ({"thresholds": "1,2,3"}, "three decreasing"),
    ({"noise": -1.0}, "Noise"),
    ({"annotators": 0}, "--annotators"),
])
def test_the_command_refuses_bad_options_before_any_request(options, message):
    with pytest.raises(CommandError, match=message):
        call_command("simulate_annotators", url="http://127.0.0.1:9", stdout=StringIO(), **options)


def test_the_command_says_when_tandem_cannot_be_reached():
    with pytest.raises(CommandError, match=r"Cannot reach Tandem at http://127\.0\.0\.1:\d+.*--url"):
        call_command("simulate_annotators", url=f"http://127.0.0.1:{free_port()}", stdout=StringIO())


@pytest.mark.django_db(transaction=True)
def test_simulated_annotators_judge_live_pairs_as_their_preference_says(live_server, celery_worker, variants):
    # The whole loop over HTTP: accounts, tokens, dialogues, live sampling by the real worker on the
    # two tiny-model servers, judgements, and each second turn continued from the chosen response.
    out = StringIO()
    call_command("simulate_annotators", url=live_server.url, annotators=2, dialogues=1, turns=2,
                 preference="annotation.workspace.simulation.length_preference", noise=0.0, create_accounts=True,
                 thresholds="0.1,0.05,0.02",  # 20, 10, 4 characters: the tiny model writes 8 tokens
                 timeout=90, stdout=out)
    assert "judgements stored   4 of 4 planned" in out.getvalue(), out.getvalue()
    assert "failures            0" in out.getvalue()

    turns = list(Turn.objects.select_related("dialogue__annotator", "chosen_generation")
                 .prefetch_related("pair__generations").order_by("dialogue_id", "index"))
    assert len(turns) == 4 and all(turn.is_judged and not turn.both_unusable for turn in turns)
    annotators = {turn.dialogue.annotator for turn in turns}
    assert {user.username for user in annotators} == {"sim-annotator-0", "sim-annotator-1"}
    assert all(has_role(user, ANNOTATOR) for user in annotators)
    model = PreferenceModel(preference=length_preference, thresholds=(0.1, 0.05, 0.02))
    for turn in turns:
        a, b = sides(turn)
        chosen, other = (a, b) if turn.chosen_generation_id == a.id else (b, a)
        context = chosen.messages  # what the models saw, and what the simulator scored against
        gap = length_preference(context, chosen.text) - length_preference(context, other.text)
        # An exact tie (two responses of the same stripped length) is a coin flip, so ">=" only.
        assert gap >= 0, (chosen.text, other.text)
        assert turn.strength == model.strength(gap)
    for first, second in zip(turns[::2], turns[1::2]):
        assert first.dialogue_id == second.dialogue_id and (first.index, second.index) == (0, 1)
        assert second.pair.generations.first().messages[1] == {"role": "assistant",
                                                                "content": first.chosen_generation.text}
