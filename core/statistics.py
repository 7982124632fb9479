"""Small statistics shared by the reports of several apps. Django-free."""

from __future__ import annotations

import math


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (95 % with the default z); None without observations."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def share_with_interval(successes: int, n: int, *, even: float = 0.5) -> dict | None:
    """A share, its Wilson 95 % interval, and whether the interval leaves out `even` (a bias that
    the number of observations can tell apart from chance); None without observations."""
    if n == 0:
        return None
    low, high = wilson(successes, n)
    return {"share": round(successes / n, 4), "ci95": [round(low, 4), round(high, 4)], "n": n,
            "biased": not low <= even <= high}


def percentile(values, q: float) -> float:
    """The ``q`` quantile (0 ≤ q ≤ 1) of ``values``, interpolated linearly between the two nearest
    (NaN for no values): what the benchmarks report as p50, p95, p99."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = (len(ordered) - 1) * q
    low, high = int(index), min(int(index) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)
