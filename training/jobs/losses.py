"""The reward model's loss as a small pure function (the margin tables: core/preference_scale.py)."""

import math


def ranking_loss(chosen: float, rejected: float, margin: float = 0.0) -> float:
    """-log σ(r_chosen − r_rejected − m) for one pair (the formula the trainer's batched loss uses)."""
    x = chosen - rejected - margin
    # log σ(x) computed stably for large |x|
    return -(-math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x)))
