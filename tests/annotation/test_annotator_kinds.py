"""The simulated annotators' kinds (careful, spammer, position-biased, adversarial): how each
judges, and how a run names them."""

import random

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.workspace.simulation import (
    PreferenceModel,
    SimulationConfig,
    SimulationError,
    length_preference,
    parse_kinds,
)

CONTEXT = [{"role": "user", "content": "Tell me about tea."}]
# length_preference: the longer answer is better, by a lot for these two.
LONG, SHORT = "word " * 40, "word"


def judged(kind: str, n: int = 2000, focus: str = "helpfulness") -> list:
    model = PreferenceModel(preference=length_preference, noise=0.0, kind=kind)
    rng = random.Random(0)
    decisions = []
    for _ in range(n):
        long_side = rng.choice("AB")
        texts = {long_side: LONG, ("B" if long_side == "A" else "A"): SHORT}
        decisions.append(model.judge(context=CONTEXT, response_a=texts["A"], response_b=texts["B"], focus=focus,
                                     rng=rng))
    return decisions


def share(decisions, predicate) -> float:
    return sum(map(predicate, decisions)) / len(decisions)


def test_each_kind_judges_as_it_should():
    assert share(judged("careful"), lambda d: d.agrees) == 1.0
    assert share(judged("adversarial"), lambda d: d.agrees) == 0.0
    spammer = judged("spammer")
    assert 0.45 < share(spammer, lambda d: d.agrees) < 0.55
    assert {d.payload["strength"] for d in spammer} == {"significantly_better", "better", "slightly_better",
                                                         "negligibly_better"}
    biased = judged("position_biased")
    assert share(biased, lambda d: d.choice == "A") == pytest.approx(0.9 + 0.1 * 0.5, abs=0.03)
    assert share(judged("careful"), lambda d: d.choice == "A") == pytest.approx(0.5, abs=0.03)


def test_no_kind_chooses_an_unsafe_response_over_a_safe_one():
    model = PreferenceModel(preference=length_preference, kind="spammer",
                            safety=lambda context, response: response == SHORT)
    rng = random.Random(1)
    for _ in range(200):
        decision = model.judge(context=CONTEXT, response_a=LONG, response_b=SHORT, focus="safety", rng=rng)
        safe = {"A": decision.payload["safe_a"], "B": decision.payload["safe_b"]}
        other = "B" if decision.choice == "A" else "A"
        assert safe[decision.choice] or not safe[other]


def test_kinds_are_given_per_annotator_and_bad_ones_are_refused():
    assert parse_kinds("careful=2,spammer=1,adversarial=1", 4) == ("careful", "careful", "spammer", "adversarial")
    config = SimulationConfig(base_url="http://127.0.0.1:1", usernames=("a", "b"), password="p",
                              model=PreferenceModel(preference=length_preference, noise=0.3),
                              kinds=parse_kinds("spammer=1,careful=1", 2))
    assert config.model_for(0).kind == "spammer" and config.model_for(1).kind == "careful"
    assert config.model_for(0).noise == 0.3
    for value, reason in (("lazy=2", "use some of careful"), ("careful=x", "give a count"),
                          ("careful=3", "count 3 annotators, not the 2"), ("careful=-1,spammer=3", "0 or more")):
        with pytest.raises(SimulationError, match=reason):
            parse_kinds(value, 2)
    with pytest.raises(SimulationError, match="Annotator kind"):
        PreferenceModel(preference=length_preference, kind="sloppy")
    with pytest.raises(CommandError, match="count 1 annotators, not the 2"):
        call_command("simulate_annotators", "--annotators", "2", "--kinds", "spammer=1")
