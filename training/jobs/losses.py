"""The reward model's loss and the Llama 2 margin tables, as small pure functions."""

import math

# m(r) per preference level (LLAMA2.md, Table 27). "small" is the default; "none" is no margin.
MARGIN_TABLES = {
    "none": {"significantly_better": 0.0, "better": 0.0, "slightly_better": 0.0, "negligibly_better": 0.0},
    "small": {"significantly_better": 1.0, "better": 2 / 3, "slightly_better": 1 / 3, "negligibly_better": 0.0},
    "large": {"significantly_better": 3.0, "better": 2.0, "slightly_better": 1.0, "negligibly_better": 0.0},
}


def margin_for(strength: str | None, table: str) -> float:
    if table not in MARGIN_TABLES:
        raise ValueError(f"unknown margin table {table!r}; use none, small or large")
    return MARGIN_TABLES[table].get(strength or "", 0.0)


def ranking_loss(chosen: float, rejected: float, margin: float = 0.0) -> float:
    """-log σ(r_chosen − r_rejected − m) for one pair (the formula the trainer's batched loss uses)."""
    x = chosen - rejected - margin
    # log σ(x) computed stably for large |x|
    return -(-math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x)))
