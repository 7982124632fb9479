"""PPO's losses and estimators (training/jobs/ppo_losses.py) on tensors small enough to work by hand."""

import math

import pytest
import torch

from training.jobs.ppo_losses import (
    entropy_from_logits,
    gae,
    kl_penalised_rewards,
    kl_per_token,
    logprobs_from_logits,
    masked_mean,
    masked_whiten,
    policy_loss,
    value_loss,
)


def close(tensor, expected, tol=1e-6):
    expected = torch.tensor(expected, dtype=tensor.dtype)
    assert tensor.shape == expected.shape and torch.allclose(tensor, expected, atol=tol, rtol=0), tensor


def test_masked_mean_ignores_padding():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_mean(values, mask).item() == pytest.approx(7 / 3)  # (1 + 2 + 4) / 3
    assert masked_mean(values, torch.zeros_like(mask)).item() == 0.0


def test_masked_whiten_standardises_the_masked_entries_only():
    # [2, 4, 6]: mean 4, unbiased variance (4 + 0 + 4) / 2 = 4, std 2 → [−1, 0, 1]; the padding comes back 0.
    values = torch.tensor([[2.0, 4.0], [6.0, 1000.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    close(masked_whiten(values, mask), [[-1.0, 0.0], [1.0, 0.0]], tol=1e-6)
    # shift_mean=False keeps the mean: (x − 4) / 2 + 4.
    close(masked_whiten(values, mask, shift_mean=False), [[3.0, 4.0], [5.0, 0.0]], tol=1e-6)


def test_logprobs_and_entropy_from_logits():
    logits = torch.log(torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]))  # p = [1/6, 2/6, 3/6] and uniform
    close(logprobs_from_logits(logits, torch.tensor([2, 0])), [math.log(0.5), math.log(1 / 3)])
    p = [1 / 6, 2 / 6, 3 / 6]
    close(entropy_from_logits(logits), [-sum(x * math.log(x) for x in p), math.log(3)])
    # The same as log_softmax, on random logits with a batch and a time axis.
    logits = torch.randn(2, 4, 11)
    labels = torch.randint(0, 11, (2, 4))
    expected = torch.log_softmax(logits, -1).gather(-1, labels[..., None]).squeeze(-1)
    assert torch.allclose(logprobs_from_logits(logits, labels), expected, atol=1e-6)


def test_kl_per_token_is_the_k1_estimator():
    # log π − log π_ref at each sampled token: log 0.5 − log 0.25 = log 2; equal probabilities give 0;
    # a token the policy likes less than the reference gives a negative value.
    logprobs = torch.log(torch.tensor([0.5, 0.25, 0.1]))
    ref = torch.log(torch.tensor([0.25, 0.25, 0.2]))
    close(kl_per_token(logprobs, ref), [math.log(2), 0.0, -math.log(2)])


def test_the_sequence_reward_lands_on_the_last_token_and_the_kl_on_every_token():
    # β = 0.1: r_t = −0.1 · KL_t; the first response has three tokens, the second two (then padding).
    kl = torch.tensor([[0.2, -0.1, 0.3], [0.5, 1.0, 7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rewards = kl_penalised_rewards(torch.tensor([1.5, -2.0]), kl, mask, kl_coef=0.1)
    close(rewards, [[-0.02, 0.01, 1.5 - 0.03], [-0.05, -2.0 - 0.1, 0.0]])


def test_gae_on_a_three_token_response_worked_by_hand():
    # γ = 1, λ = 0.95; rewards [0, 0, 1] (the sequence reward at the last token), values [0.5, 0.6, 0.7]:
    #   t = 2: δ = 1 + 0 − 0.7 = 0.3                A = 0.3
    #   t = 1: δ = 0 + 0.7 − 0.6 = 0.1              A = 0.1 + 0.95 · 0.3   = 0.385
    #   t = 0: δ = 0 + 0.6 − 0.5 = 0.1              A = 0.1 + 0.95 · 0.385 = 0.46575
    #   returns = A + V = [0.96575, 0.985, 1.0]
    # Second row, two tokens then padding (whatever sits under the padding is ignored):
    #   t = 1: δ = 2 + 0 − 1.5 = 0.5                A = 0.5
    #   t = 0: δ = 0 + 1.5 − 1 = 0.5                A = 0.5 + 0.95 · 0.5 = 0.975
    #   returns = [1.975, 2.0, 0]
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 9.0]])
    values = torch.tensor([[0.5, 0.6, 0.7], [1.0, 1.5, 7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    close(advantages, [[0.46575, 0.385, 0.3], [0.975, 0.5, 0.0]])
    close(returns, [[0.96575, 0.985, 1.0], [1.975, 2.0, 0.0]])
    # γ = 0.5, λ = 0 is one-step TD: A_t = r_t + 0.5 · V_{t+1} − V_t.
    advantages, _ = gae(rewards[:1], values[:1], mask[:1], gamma=0.5, lam=0.0)
    close(advantages, [[0.5 * 0.6 - 0.5, 0.5 * 0.7 - 0.6, 1 - 0.7]])


def test_policy_loss_clips_the_ratio_outside_the_range():
    # ratio, advantage → max(−A·r, −A·clip(r, 0.8, 1.2)):
    #   1.5, +1 → max(−1.5, −1.2) = −1.2  clipped (no gradient: the policy already gained enough)
    #   0.5, +1 → max(−0.5, −0.8) = −0.5  not clipped (the surrogate still pulls the ratio up)
    #   1.1, −1 → max( 1.1,  1.1) =  1.1  inside the range
    #   0.5, −2 → max( 1.0,  1.6) =  1.6  clipped
    # loss = (−1.2 − 0.5 + 1.1 + 1.6) / 4 = 0.25; clip fraction 2/4; a padded fifth token is ignored.
    ratio = torch.tensor([[1.5, 0.5, 1.1, 0.5, 50.0]])
    advantages = torch.tensor([[1.0, 1.0, -1.0, -2.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    old = torch.zeros_like(ratio)
    logprobs = torch.log(ratio).requires_grad_(True)
    loss, clip_fraction, approx_kl = policy_loss(logprobs, old, advantages, mask, clip=0.2)
    assert loss.item() == pytest.approx(0.25, abs=1e-6)
    assert clip_fraction.item() == pytest.approx(0.5)
    # k3: mean((r − 1) − log r) over the four tokens.
    expected_kl = sum((r - 1) - math.log(r) for r in (1.5, 0.5, 1.1, 0.5)) / 4
    assert approx_kl.item() == pytest.approx(expected_kl, abs=1e-6)  # 0.12138
    loss.backward()
    # d/dlogπ of −A·r is −A·r / 4 where unclipped; 0 where clipped or padded.
    close(logprobs.grad, [[0.0, -0.5 / 4, 1.1 / 4, 0.0, 0.0]])


def test_policy_loss_at_ratio_one_is_minus_the_mean_advantage():
    advantages = torch.tensor([[0.3, -0.1, 0.4]])
    logprobs = torch.log(torch.tensor([[0.2, 0.3, 0.4]]))
    loss, clip_fraction, approx_kl = policy_loss(logprobs, logprobs.clone(), advantages, torch.ones(1, 3))
    assert loss.item() == pytest.approx(-0.2, abs=1e-7)
    assert clip_fraction.item() == 0.0 and approx_kl.item() == pytest.approx(0.0, abs=1e-7)


def test_value_loss_clips_the_value_update():
    # V_old = 1, clip 0.2 → V_clip = V_old + clamp(V − V_old, ±0.2).
    #   V = 1.5, R = 2: unclipped (1.5 − 2)² = 0.25, clipped (1.2 − 2)² = 0.64 → 0.64 (no gradient)
    #   V = 1.5, R = 0: unclipped 1.5² = 2.25, clipped 1.2² = 1.44 → 2.25
    #   V = 1.1, R = 2: inside the range, (1.1 − 2)² = 0.81 both ways
    # loss = ½ · (0.64 + 2.25 + 0.81) / 3
    values = torch.tensor([[1.5, 1.5, 1.1, 42.0]], requires_grad=True)
    old = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    returns = torch.tensor([[2.0, 0.0, 2.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss = value_loss(values, old, returns, mask, clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (0.64 + 2.25 + 0.81) / 3, abs=1e-6)
    loss.backward()
    # d/dV of ½(V − R)² / 3 = (V − R) / 3 where the unclipped term counts.
    close(values.grad, [[0.0, 1.5 / 3, (1.1 - 2) / 3, 0.0]])
