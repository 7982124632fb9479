"""Annotator reliability, one-coin Dawid–Skene on the pair choice: a hand-worked example, recovery
of known accuracies in a simulation, gold answers."""

import random

import pytest

from annotation.quality.reliability import one_coin


def test_a_hand_worked_example():
    """Three annotators on four items: x and y always agree, z always says the other position. By
    symmetry x and y share one accuracy a and z has 1 − a. Each item's posterior that x and y are
    right is p = r³ / (r³ + 1) with r = a / (1 − a) (x, y and z's contrary vote all point the same
    way), and the M-step under the Beta(2, 2) prior gives a = (4p + 1) / 6: the fixed point of those
    two lines, solved here on its own, is the model's answer (a bit under 5/6: p is not quite 1)."""
    items = {i: [("x", 1 + i % 2), ("y", 1 + i % 2), ("z", 2 - i % 2)] for i in range(4)}
    a = 0.8
    for _ in range(200):
        r = a / (1 - a)
        a = (4 * r**3 / (r**3 + 1) + 1) / 6
    found = one_coin(items)
    assert found["x"]["accuracy"] == found["y"]["accuracy"] == pytest.approx(a, abs=1e-4)
    assert found["z"]["accuracy"] == pytest.approx(1 - a, abs=1e-4)
    assert 0.82 < a < 5 / 6
    assert found["x"]["ratings"] == 4 and found["x"]["gold"] == 0


def test_known_accuracies_are_recovered_and_gold_answers_count():
    rng = random.Random(7)
    truth = {"a": 0.95, "b": 0.85, "c": 0.7, "d": 0.55, "e": 0.3}
    items = {}
    for item in range(600):
        better = rng.choice((1, 2))
        raters = rng.sample(sorted(truth), 3)
        items[item] = [(who, better if rng.random() < truth[who] else 3 - better) for who in raters]
    found = one_coin(items)
    for who, accuracy in truth.items():
        assert found[who]["accuracy"] == pytest.approx(accuracy, abs=0.06), (who, found[who])
        low, high = found[who]["ci95"]
        assert low <= found[who]["accuracy"] <= high and high - low < 0.15
    fewer = one_coin(dict(list(items.items())[:100]))
    assert all(fewer[who]["ci95"][1] - fewer[who]["ci95"][0] > found[who]["ci95"][1] - found[who]["ci95"][0]
               for who in truth), "fewer ratings, wider intervals"
    # Items with one rating say nothing; an annotator known only from gold answers is their share.
    alone = one_coin({1: [("f", 1)]}, gold={"f": [True] * 8 + [False] * 2})
    assert alone["f"]["ratings"] == 0 and alone["f"]["gold"] == 10
    assert alone["f"]["accuracy"] == pytest.approx((8 + 1) / (10 + 2), abs=1e-4)


def test_an_item_with_hundreds_of_ratings_does_not_overflow():
    items = {1: [(f"r{i}", 1) for i in range(600)], 2: [(f"r{i}", 2) for i in range(600)]}
    found = one_coin(items)
    assert all(0.5 < row["accuracy"] < 1 for row in found.values())
