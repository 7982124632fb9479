"""PPO's losses and estimators as small pure torch functions, each checkable by hand.

Shapes: per-token tensors are [batch, response_tokens], aligned on the response (token t is the
t-th generated token) and right padded; `mask` is 1 on real response tokens (the end-of-sequence
token included) and 0 on the padding after them. Every mean is over the masked tokens of the
whole batch (token level), not per sequence.
"""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ values·mask / Σ mask (0 when the mask is empty)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over the masked entries: Σ (x − mean)²·mask / (n − 1) (or / n when not unbiased)."""
    mask = mask.to(values.dtype)
    mean = masked_mean(values, mask)
    n = mask.sum()
    squares = (((values - mean) ** 2) * mask).sum()
    return squares / (n - 1).clamp(min=1) if unbiased else squares / n.clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
                  eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / sqrt(var + eps) over the masked entries (unbiased variance); with
    shift_mean=False the mean is added back: x scaled to unit variance only. Masked-out entries
    come back as 0."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(values.dtype)


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log π(label) = logits[label] − logsumexp(logits), in float32; logits [..., vocab],
    labels [...] → [...]. (No full log-softmax tensor is built: the vocabulary is large.)"""
    logits = logits.float()
    picked = torch.gather(logits, -1, labels.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """H = −Σ p log p = logsumexp(z) − Σ softmax(z)·z, per position, in float32."""
    logits = logits.float()
    return torch.logsumexp(logits, dim=-1) - (torch.softmax(logits, dim=-1) * logits).sum(-1)


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """The k1 estimator of KL(π_θ ‖ π_ref) at each sampled token: log π_θ(y_t) − log π_ref(y_t).

    Unbiased for the sequence KL when the tokens are sampled from π_θ (its sum over a response
    estimates KL of the whole response); a single token's value may be negative.
    """
    return logprobs - ref_logprobs


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens.

        δ_t = r_t + γ·V_{t+1} − V_t          (V after the last real token is 0)
        A_t = δ_t + γ·λ·A_{t+1}
        returns_t = A_t + V_t

    Precondition: right-padded masks (a response's tokens come first, padding after), so the
    padding has r = V = 0 and contributes nothing. Returns (advantages, returns), both masked.
    """
    mask = mask.to(values.dtype)
    rewards, values = rewards * mask, values * mask
    length = rewards.shape[-1]
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[..., 0])
    for t in reversed(range(length)):
        next_value = values[..., t + 1] if t + 1 < length else torch.zeros_like(running)
        delta = rewards[..., t] + gamma * next_value - values[..., t]
        running = delta + gamma * lam * running
        advantages[..., t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate, to minimise.

        ratio = exp(log π_θ − log π_old)
        loss  = mean( max(−A·ratio, −A·clamp(ratio, 1 − ε, 1 + ε)) )

    Returns (loss, clip_fraction, approx_kl): clip_fraction is the share of tokens where the
    clipped term is the larger (so its gradient is zero); approx_kl is the k3 estimator of
    KL(π_old ‖ π_θ), mean((ratio − 1) − log ratio), which is never negative. Both are detached.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped > unclipped).to(logprobs.dtype), mask)
        approx_kl = masked_mean((ratio - 1) - log_ratio, mask)
    return loss, clip_fraction, approx_kl


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, clip: float = 0.2) -> torch.Tensor:
    """PPO's clipped value loss, to minimise.

        V_clip = V_old + clamp(V − V_old, −ε, ε)
        loss   = ½ · mean( max((V − R)², (V_clip − R)²) )

    The value may not profit from moving more than ε away from the value at rollout time.
    """
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def kl_penalised_rewards(sequence_rewards: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor,
                         kl_coef: float) -> torch.Tensor:
    """Per-token rewards: r_t = −β·KL_t on every response token, plus the sequence's (whitened)
    reward R at its last token (the last 1 of its right-padded mask). sequence_rewards [batch],
    kl and mask [batch, tokens] → [batch, tokens], 0 on the padding."""
    mask = mask.to(kl.dtype)
    rewards = -kl_coef * kl * mask
    last = mask.sum(-1).long() - 1
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last] += sequence_rewards.to(rewards.dtype)
    return rewards
