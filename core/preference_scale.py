"""Llama 2's preference levels and margin tables (LLAMA2.md, Table 27): the one owner of both.

Django-free: the annotation app (its scale, the exports) and the training jobs (the reward loss)
read the same table, so the margin an export writes and the margin a job trains with cannot drift.
"""

SIGNIFICANTLY_BETTER = "significantly_better"
BETTER = "better"
SLIGHTLY_BETTER = "slightly_better"
NEGLIGIBLY_BETTER = "negligibly_better"

# Strongest first: the order of the scale's A side and of Table 8's columns.
STRENGTHS = (SIGNIFICANTLY_BETTER, BETTER, SLIGHTLY_BETTER, NEGLIGIBLY_BETTER)
STRENGTH_LABELS = {
    SIGNIFICANTLY_BETTER: "significantly better",
    BETTER: "better",
    SLIGHTLY_BETTER: "slightly better",
    NEGLIGIBLY_BETTER: "negligibly better / unsure",
}

# m(r) per preference level. "small" is the paper's better default; "none" trains without a margin.
MARGIN_TABLES = {
    "none": dict.fromkeys(STRENGTHS, 0.0),
    "small": {SIGNIFICANTLY_BETTER: 1.0, BETTER: 2 / 3, SLIGHTLY_BETTER: 1 / 3, NEGLIGIBLY_BETTER: 0.0},
    "large": {SIGNIFICANTLY_BETTER: 3.0, BETTER: 2.0, SLIGHTLY_BETTER: 1.0, NEGLIGIBLY_BETTER: 0.0},
}
DEFAULT_MARGIN_TABLE = "small"


def margin_for(strength: str | None, table: str) -> float:
    """m(r) of a preference level under a table; a pair without a level (an import) gets 0."""
    if table not in MARGIN_TABLES:
        raise ValueError(f"unknown margin table {table!r}; use {', '.join(MARGIN_TABLES)}")
    return MARGIN_TABLES[table].get(strength or "", 0.0)
