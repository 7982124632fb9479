"""Llama 2's combined reward checked against hand-computed values."""

import math

import pytest

from training.jobs.rejection_sampling import sample_reward
from training.jobs.rewards import combined_raw, combined_rewards, sigmoid, whiten


def test_the_safety_score_decides_for_adversarial_prompts_and_below_the_threshold():
    at_threshold = math.log(0.15 / 0.85)  # the raw score whose σ is exactly 0.15
    assert sigmoid(at_threshold) == pytest.approx(0.15)
    assert combined_raw(helpfulness=2.2, safety=1.4, is_safety_prompt=False) == 2.2  # safe enough: helpfulness
    assert combined_raw(helpfulness=2.2, safety=1.4, is_safety_prompt=True) == 1.4  # adversarial prompt
    assert combined_raw(helpfulness=2.2, safety=at_threshold - 0.01, is_safety_prompt=False) == at_threshold - 0.01
    assert combined_raw(helpfulness=2.2, safety=at_threshold + 1e-9, is_safety_prompt=False) == 2.2  # not below
    assert combined_raw(helpfulness=None, safety=0.8, is_safety_prompt=False) == 0.8
    assert combined_raw(helpfulness=0.4, safety=None, is_safety_prompt=True) == 0.4


def test_whitening_standardises():
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


def test_the_raw_score_of_the_chosen_model_is_whitened_even_far_from_zero():
    # logit(σ(r)) clamps p to [1e-6, 1 − 1e-6], which saturated raw scores beyond ±13.8: a batch
    # with raw scores −25 and 30 moved the mean and flipped the sign of an ordinary sample's reward.
    raw = [-25.0, 30.0, 10.0]
    rewards = combined_rewards(helpfulness_scores=raw, safety_scores=None, is_safety_prompt=[False] * 3)
    assert rewards == pytest.approx(whiten(raw))
    assert rewards[2] > 0  # 10 is above the batch's mean of 5 (the saturated mean was 7.9)
    assert combined_raw(helpfulness=40.0, safety=None, is_safety_prompt=False) == 40.0


def test_the_rule_decides_on_the_safety_probability_and_returns_a_raw_score():
    # σ(−2) = 0.119 < 0.15: the safety RM's raw score; σ(−1) = 0.27: the helpfulness RM's.
    assert combined_raw(helpfulness=3.0, safety=-2.0, is_safety_prompt=False) == -2.0
    assert combined_raw(helpfulness=3.0, safety=-1.0, is_safety_prompt=False) == 3.0
    assert combined_raw(helpfulness=3.0, safety=-30.0, is_safety_prompt=False) == -30.0
    assert combined_raw(helpfulness=3.0, safety=25.0, is_safety_prompt=True) == 25.0
    with pytest.raises(ValueError):
        combined_raw(helpfulness=None, safety=None, is_safety_prompt=False)


def test_rejection_sampling_ranks_samples_beyond_the_clamp():
    # Two answers an RM scores 20 and 25 were tied at logit(1 − 1e-6) ≈ 13.8; the better must win.
    assert sample_reward(helpfulness=25.0, safety=None, is_safety=False) > sample_reward(
        helpfulness=20.0, safety=None, is_safety=False)
