"""Small statistics shared by the reports of several apps. Django-free."""

from __future__ import annotations

import math
from collections import Counter, defaultdict


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


def game_counts(games) -> tuple[Counter, Counter]:
    """(wins per player, meetings per sorted pair of players) of (winner, loser) games."""
    wins: Counter = Counter()
    meetings: Counter = Counter()
    for winner, loser in games:
        wins[winner] += 1
        meetings[tuple(sorted((winner, loser)))] += 1
    return wins, meetings


def bradley_terry(games: list[tuple[str, str]], *, prior: float = 0.5, iterations: int = 500,
                  tolerance: float = 1e-10) -> dict[str, float]:
    """{player: log-strength}, geometric mean of the strengths 1, from (winner, loser) games: Hunter's
    (2004) MM iteration, with ``prior`` virtual wins each way between every two players (the human-vote
    leaderboard's fit, training/leaderboard.py, and the annotators' anomaly scores')."""
    wins, meetings = game_counts(games)
    return bradley_terry_counts(wins, meetings, prior=prior, iterations=iterations, tolerance=tolerance)


def bradley_terry_counts(wins: Counter, meetings: Counter, *, prior: float = 0.5, iterations: int = 500,
                         tolerance: float = 1e-10, start: dict[str, float] | None = None) -> dict[str, float]:
    """bradley_terry from counts (game_counts'; players with no meeting left are dropped), optionally
    starting from earlier log-strengths (``start``): a fit of nearly the same games then converges in
    a few iterations."""
    meetings = defaultdict(float, {pair: n for pair, n in meetings.items() if n > 0})
    players = {player for pair in meetings for player in pair}
    wins = Counter({player: wins.get(player, 0) for player in players})
    if prior:
        ordered = sorted(players)
        for index, a in enumerate(ordered):
            for b in ordered[index + 1:]:
                meetings[(a, b)] += 2 * prior
                wins[a] += prior
                wins[b] += prior
    strength = {player: math.exp((start or {}).get(player, 0.0)) for player in players}
    opponents = defaultdict(list)
    for (a, b), n in meetings.items():
        opponents[a].append((b, n))
        opponents[b].append((a, n))
    for _ in range(iterations):
        updated = {}
        for player in players:
            denominator = sum(n / (strength[player] + strength[other]) for other, n in opponents[player])
            updated[player] = wins[player] / denominator if denominator and wins[player] else 1e-12
        centre = math.exp(sum(math.log(v) for v in updated.values()) / len(updated)) if updated else 1.0
        updated = {player: value / centre for player, value in updated.items()}
        change = max((abs(math.log(updated[p]) - math.log(strength[p])) for p in players), default=0.0)
        strength = updated
        if change < tolerance:
            break
    return {player: math.log(value) for player, value in strength.items()}


def chi2_sf_even(x: float, dof: int) -> float:
    """P(X > x) for X ~ χ² with an even number of degrees of freedom: the Poisson sum
    e^(−x/2) Σ_{i<k} (x/2)^i / i! with k = dof / 2, added in log space (no overflow at any k)."""
    if dof <= 0 or dof % 2:
        raise ValueError("an even, positive number of degrees of freedom")
    if x <= 0:
        return 1.0
    half = x / 2
    logs = [i * math.log(half) - math.lgamma(i + 1) for i in range(dof // 2)]
    top = max(logs)
    return min(1.0, math.exp(-half + top + math.log(sum(math.exp(value - top) for value in logs))))


def fisher_combined(p_values: list[float]) -> float | None:
    """Fisher's method: the p-value of −2 Σ log p_i against χ² with 2k degrees of freedom (None for none)."""
    if not p_values:
        return None
    statistic = -2.0 * sum(math.log(max(p, 1e-300)) for p in p_values)
    return chi2_sf_even(statistic, 2 * len(p_values))


def outcome_p_value(q: float, u: float) -> float:
    """A randomised p-value of one binary outcome whose probability under the model was ``q``, against
    outcomes less likely than expected: uniform on (0, 1) under the model (``u`` uniform on (0, 1)).
    The less likely outcome (q < ½) gets u·q; the more likely one (1 − q) + u·q; q = ½ gives u."""
    if q == 0.5:
        return u
    return u * q if q < 0.5 else (1.0 - q) + u * q
