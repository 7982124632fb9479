"""The shared statistics: Wilson intervals and shares flagged against an even split."""

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
