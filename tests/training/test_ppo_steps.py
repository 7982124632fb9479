"""ppo_steps.advantages on its own, checked by hand: padding, the KL penalty, the sequence reward
at the last token, GAE with γ = λ = 1 (returns are the reward-to-go)."""

import pytest

torch = pytest.importorskip("torch")

from training.jobs.ppo import PPOJobConfig  # noqa: E402
from training.jobs.ppo_steps import advantages  # noqa: E402


def test_advantages_by_hand():
    config = PPOJobConfig(kl_coef=0.1, gamma=1.0, lam=1.0, whiten_advantages=False)
    rollouts = advantages(
        config, whitened=[1.0, -1.0],
        logprobs=[torch.tensor([-1.0, -2.0]), torch.tensor([-1.0, -1.0, -1.0])],
        ref_logprobs=[torch.tensor([-1.5, -2.0]), torch.tensor([-1.0, -1.0, -1.0])],
        values=[torch.tensor([0.5, 0.25]), torch.tensor([0.0, 0.0, 0.0])])
    assert rollouts.mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert rollouts.kl.tolist() == [[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]
    # Rewards: [−0.1·0.5, 1.0] and [0, 0, −1]; returns are what is still to come from each token on.
    assert torch.allclose(rollouts.returns, torch.tensor([[0.95, 1.0, 0.0], [-1.0, -1.0, -1.0]]))
    assert torch.allclose(rollouts.advantages, torch.tensor([[0.45, 0.75, 0.0], [-1.0, -1.0, -1.0]]))
    assert rollouts.values.tolist() == [[0.5, 0.25, 0.0], [0.0, 0.0, 0.0]]


def test_advantages_are_whitened_over_the_response_tokens_only():
    config = PPOJobConfig(kl_coef=0.0, gamma=1.0, lam=1.0, whiten_advantages=True)
    rollouts = advantages(config, whitened=[2.0, -1.0, 0.5],
                          logprobs=[torch.zeros(1), torch.zeros(3), torch.zeros(2)],
                          ref_logprobs=[torch.zeros(1), torch.zeros(3), torch.zeros(2)],
                          values=[torch.zeros(1), torch.zeros(3), torch.zeros(2)])
    tokens = rollouts.advantages[rollouts.mask.bool()]
    assert abs(float(tokens.mean())) < 1e-6 and abs(float(tokens.std()) - 1.0) < 1e-5
    assert float(rollouts.advantages[~rollouts.mask.bool()].abs().sum()) == 0.0
