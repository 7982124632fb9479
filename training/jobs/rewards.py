"""Llama 2's combined reward (LLAMA2.md, p. 15–16), as small pure functions.

A reward model's raw scalar score r is read as a probability R = σ(r). For a prompt and a
response:

    R_c = R_s   if the prompt is adversarial (safety) or R_s < 0.15
          R_h   otherwise
    R   = WHITEN(LOGIT(R_c)) − β · KL(π_θ ‖ π_0)

LOGIT undoes the sigmoid, so LOGIT(R_c) is the chosen RM's raw score r. It is taken as such
(`combined_raw`), never as the round trip logit(σ(r)): in floating point that round trip has to clamp
p away from 0 and 1, which saturates scores beyond |r| ≈ 13.8 and, through the batch's mean and
spread, moves every other sample's whitened reward. WHITEN standardises over the batch. The KL term
belongs to PPO and is applied per token there.
"""

from __future__ import annotations

import math

SAFETY_THRESHOLD = 0.15  # precision 0.89, recall 0.55 on unsafe responses in the paper


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def combined_raw(*, helpfulness: float | None, safety: float | None, is_safety_prompt: bool,
                 threshold: float = SAFETY_THRESHOLD) -> float:
    """LOGIT(R_c) from the two RMs' raw scores: the rule decides on σ(r_s), the chosen raw score is returned."""
    if safety is None:
        if helpfulness is None:
            raise ValueError("at least one reward model score is needed")
        return helpfulness
    if helpfulness is None or is_safety_prompt or sigmoid(safety) < threshold:
        return safety
    return helpfulness


def whiten(values: list[float], eps: float = 1e-8) -> list[float]:
    """(x − mean) / std over the batch (population std); a batch of one is centred only."""
    n = len(values)
    if n == 0:
        return []
    mean = sum(values) / n
    if n == 1:
        return [0.0]
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    return [(v - mean) / (std + eps) for v in values]


def combined_rewards(*, helpfulness_scores: list[float] | None, safety_scores: list[float] | None,
                     is_safety_prompt: list[bool], threshold: float = SAFETY_THRESHOLD) -> list[float]:
    """WHITEN(LOGIT(R_c)) for a batch, from the RMs' raw scalar scores."""
    n = len(is_safety_prompt)
    h = helpfulness_scores if helpfulness_scores is not None else [None] * n
    s = safety_scores if safety_scores is not None else [None] * n
    return whiten([combined_raw(helpfulness=h[i], safety=s[i], is_safety_prompt=is_safety_prompt[i],
                                threshold=threshold) for i in range(n)])
