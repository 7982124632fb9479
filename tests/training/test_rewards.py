"""Llama 2's combined reward checked against hand-computed values."""

import math

import pytest

from training.jobs.rewards import combined, combined_rewards, logit, sigmoid, whiten


def test_the_safety_score_decides_for_adversarial_prompts_and_below_the_threshold():
    assert combined(helpfulness=0.9, safety=0.8, is_safety_prompt=False) == 0.9  # safe enough: helpfulness
    assert combined(helpfulness=0.9, safety=0.8, is_safety_prompt=True) == 0.8  # adversarial prompt
    assert combined(helpfulness=0.9, safety=0.14, is_safety_prompt=False) == 0.14  # R_s < 0.15
    assert combined(helpfulness=0.9, safety=0.15, is_safety_prompt=False) == 0.9  # not strictly below
    assert combined(helpfulness=None, safety=0.7, is_safety_prompt=False) == 0.7
    assert combined(helpfulness=0.6, safety=None, is_safety_prompt=True) == 0.6


def test_logit_undoes_the_sigmoid_and_whitening_standardises():
    for raw in (-3.0, -0.2, 0.0, 1.7):
        assert logit(sigmoid(raw)) == pytest.approx(raw, abs=1e-9)
    assert logit(0.5) == 0 and logit(0.75) == pytest.approx(math.log(3))
    # mean 2, population std sqrt(2/3)
    assert whiten([1.0, 2.0, 3.0]) == pytest.approx([-math.sqrt(1.5), 0.0, math.sqrt(1.5)])
    assert whiten([5.0]) == [0.0]


def test_a_batch_of_combined_rewards_by_hand():
    # raw helpfulness scores 2, 0, 1; raw safety scores 1, -2 (σ = 0.119 < 0.15), 3; prompt 3 adversarial.
    rewards = combined_rewards(helpfulness_scores=[2.0, 0.0, 1.0], safety_scores=[1.0, -2.0, 3.0],
                               is_safety_prompt=[False, False, True])
    # R_c = σ(2), σ(-2), σ(3) → LOGIT → 2, -2, 3 → whitened over (2, -2, 3): mean 1, std sqrt(14/3)
    std = math.sqrt(((2 - 1) ** 2 + (-2 - 1) ** 2 + (3 - 1) ** 2) / 3)
    assert rewards == pytest.approx([1 / std, -3 / std, 2 / std])
