"""The shared statistics: Wilson intervals and shares flagged against an even split."""

import pytest

from core.statistics import share_with_interval, wilson


def test_a_share_is_flagged_only_when_its_interval_leaves_out_even():
    assert share_with_interval(1, 1)["biased"] is False  # one left choice says nothing
    assert share_with_interval(6, 6)["biased"] is True
    assert share_with_interval(60, 100)["biased"] is True  # 0.504–0.689
    assert share_with_interval(55, 100)["biased"] is False  # 0.452–0.644
    assert share_with_interval(0, 0) is None


def test_wilson_by_hand():
    # 6 of 6, z = 1.96: centre (1 + z²/12) / (1 + z²/6) = 0.80483, half-width 0.19517.
    low, high = wilson(6, 6)
    assert round(low, 4) == 0.6097 and round(high, 9) == 1.0
    assert wilson(0, 0) is None


def test_chi_square_tail_and_fishers_method_by_hand():
    import math

    from core.statistics import chi2_sf_even, fisher_combined

    assert chi2_sf_even(4.0, 2) == pytest.approx(math.exp(-2.0))
    assert chi2_sf_even(9.4877, 4) == pytest.approx(0.05, abs=1e-4)  # the table's 95 % point at 4 dof
    assert chi2_sf_even(18.307, 10) == pytest.approx(0.05, abs=1e-4)  # at 10 dof
    assert chi2_sf_even(0.0, 6) == 1.0
    # Two p-values of 0.05: −2 Σ log p = 11.98 on 4 dof → e^(−x/2) (1 + x/2).
    x = -4 * math.log(0.05)
    assert fisher_combined([0.05, 0.05]) == pytest.approx(math.exp(-x / 2) * (1 + x / 2))
    assert fisher_combined([1.0, 1.0, 1.0]) == 1.0 and fisher_combined([]) is None
    with pytest.raises(ValueError):
        chi2_sf_even(1.0, 3)
    # Thousands of degrees of freedom (an annotator with a thousand votes): no overflow. χ²(2000) has
    # mean 2000 and standard deviation ≈ 63.2, so it passes 2000 a bit less than half the time and
    # 2200 (3.2 sd) rarely; a sum of 2000 p-values all at 0.05 is far out.
    assert chi2_sf_even(2000.0, 2000) == pytest.approx(0.4958, abs=1e-3)
    assert 1e-4 < chi2_sf_even(2200.0, 2000) < 2e-3
    assert fisher_combined([0.05] * 1000) < 1e-100


def test_a_votes_randomised_p_value_is_uniform_under_the_model():
    import random

    from core.statistics import outcome_p_value

    rng = random.Random(1)
    for q_win in (0.5, 0.7, 0.95):
        values = []
        for _ in range(20000):
            won = rng.random() < q_win  # the vote follows the model
            values.append(outcome_p_value(q_win if won else 1 - q_win, rng.random()))
        for cut in (0.05, 0.25, 0.5, 0.9):
            assert sum(v <= cut for v in values) / len(values) == pytest.approx(cut, abs=0.015)
    assert outcome_p_value(0.2, 0.5) == pytest.approx(0.1)  # the less likely side: u·q
    assert outcome_p_value(0.8, 0.5) == pytest.approx(0.6)  # the likelier: (1 − q) + u·q
