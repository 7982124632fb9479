import random
from collections import Counter

import pytest

from modelserving.pairing import NoActiveVariant, VariantSpec, plan_pair, two_temperatures

COOL = VariantSpec(1, "cool", 0.5, 0.8, 1.0)
WARM = VariantSpec(2, "warm", 1.0, 1.3, 1.0)
HOT = VariantSpec(3, "hot", 1.4, 1.6, 2.0)


def test_two_active_variants_give_two_different_variants_each_in_its_own_range():
    rng = random.Random(7)
    for _ in range(200):
        plan = plan_pair([COOL, WARM], rng=rng, min_gap=0.3)
        assert plan.strategy == "two_variants"
        ids = {plan.first.variant_id, plan.second.variant_id}
        assert ids == {1, 2}
        for choice in plan.choices:
            spec = COOL if choice.variant_id == 1 else WARM
            assert spec.temperature_min <= choice.temperature <= spec.temperature_max


def test_one_active_variant_is_sampled_at_two_clearly_different_temperatures():
    rng = random.Random(3)
    for _ in range(200):
        plan = plan_pair([WARM], rng=rng, min_gap=0.2)
        assert plan.strategy == "one_variant_two_temperatures"
        assert plan.first.variant_id == plan.second.variant_id == 2
        low, high = sorted((plan.first.temperature, plan.second.temperature))
        assert 1.0 <= low and high <= 1.3
        assert high - low >= 0.2 - 1e-9


def test_a_range_narrower_than_the_gap_is_widened_around_its_middle():
    rng = random.Random(0)
    for _ in range(50):
        a, b = two_temperatures(rng, 0.7, 0.7, 0.3)
        assert abs(a - b) >= 0.3 - 1e-9
        assert min(a, b) >= 0.55 - 1e-9 and max(a, b) <= 0.85 + 1e-9


def test_narrow_range_at_zero_never_goes_negative():
    a, b = two_temperatures(random.Random(1), 0.0, 0.0, 0.3)
    assert min(a, b) >= 0 and abs(a - b) >= 0.3 - 1e-9


def test_variants_are_drawn_in_proportion_to_their_weights():
    rng = random.Random(11)
    counts = Counter()
    heavy = VariantSpec(3, "heavy", 1.4, 1.6, 6.0)
    for _ in range(4000):
        plan = plan_pair([COOL, WARM, heavy], rng=rng, min_gap=0.3)
        counts.update(c.variant_id for c in plan.choices)
    # Without replacement, the heavy variant (6 of 8) is in nearly every pair; the light ones split the rest.
    assert counts[3] > 3700
    assert 0.8 < counts[1] / counts[2] < 1.25


def test_zero_weight_variant_is_never_drawn_when_others_have_weight():
    rng = random.Random(5)
    muted = VariantSpec(4, "muted", 0.5, 0.6, 0.0)
    for _ in range(300):
        plan = plan_pair([COOL, WARM, muted], rng=rng, min_gap=0.3)
        assert 4 not in {c.variant_id for c in plan.choices}


def test_every_choice_and_seed_is_recorded():
    plan = plan_pair([COOL, WARM], rng=random.Random(2), min_gap=0.3)
    recorded = plan.record["choices"]
    assert [(c["variant_id"], c["temperature"], c["seed"]) for c in recorded] == [
        (c.variant_id, c.temperature, c.seed) for c in plan.choices
    ]
    assert {c["name"] for c in plan.record["candidates"]} == {"cool", "warm"}
    assert plan.first.seed != plan.second.seed


def test_the_same_random_state_gives_the_same_plan():
    assert plan_pair([COOL, WARM, HOT], rng=random.Random(9), min_gap=0.3) == plan_pair(
        [COOL, WARM, HOT], rng=random.Random(9), min_gap=0.3)


def test_no_variant_refuses_with_a_readable_reason():
    with pytest.raises(NoActiveVariant, match="No active policy variant"):
        plan_pair([], rng=random.Random(0), min_gap=0.3)
