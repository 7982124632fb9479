"""The human-vote leaderboard of policy variants: a Bradley–Terry model fitted to the judgements.

Every judged pair whose two responses come from two different variants is one comparison: the
variant of the chosen response beat the other (a "negligibly better" choice still counts as a
win; pairs marked both unusable, and pairs of one variant at two temperatures, are left out).

Bradley–Terry: P(i beats j) = p_i / (p_i + p_j). Fitted with Hunter's (2004) MM iteration
    p_i ← W_i / Σ_j n_ij / (p_i + p_j),
normalised to a geometric mean of 1; the score is log p_i (0 = an average variant; a difference of
d means odds e^d of winning). `prior` adds that many virtual wins each way between every two
variants, whether they met or not, so an unbeaten variant gets a finite score and the fit has one
common scale. Variants that never met, directly or through others, still fall into separate groups
(connected parts of the comparison graph): between groups only the prior speaks, so each row
carries its group and its rank within it, and the page says when there is more than one.
95 % intervals: percentile bootstrap over comparisons.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict

from django.db.models import F

from annotation.models import Turn


def comparisons(*, batch=None) -> list[tuple[str, str]]:
    """(winner, loser) variant names, one per judged two-variant pair."""
    from modelserving.models import Generation

    judged = Turn.objects.filter(submitted_at__isnull=False, chosen_generation__isnull=False)
    if batch is not None:
        judged = judged.filter(batch=batch)
    rows = (Generation.objects.filter(pair__turn__in=judged)
            .exclude(pk=F("pair__turn__chosen_generation_id"))
            .values_list("pair__turn__chosen_generation__variant__name", "variant__name"))
    return [(winner, loser) for winner, loser in rows if winner != loser]


def bradley_terry(games: list[tuple[str, str]], *, prior: float = 0.5, iterations: int = 500,
                  tolerance: float = 1e-10) -> dict[str, float]:
    """{variant: log-strength}, geometric mean of the strengths 1."""
    wins: Counter = Counter()
    meetings: dict[tuple[str, str], float] = defaultdict(float)
    players = set()
    for winner, loser in games:
        wins[winner] += 1
        meetings[tuple(sorted((winner, loser)))] += 1
        players.update((winner, loser))
    if prior:
        ordered = sorted(players)
        for index, a in enumerate(ordered):
            for b in ordered[index + 1:]:
                meetings[(a, b)] += 2 * prior
                wins[a] += prior
                wins[b] += prior
    strength = {player: 1.0 for player in players}
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


def groups(games: list[tuple[str, str]]) -> list[set[str]]:
    """The connected parts of the comparison graph: variants linked by a chain of comparisons."""
    parent: dict[str, str] = {}

    def root(player: str) -> str:
        while parent.setdefault(player, player) != player:
            parent[player] = parent[parent[player]]
            player = parent[player]
        return player

    for winner, loser in games:
        parent[root(winner)] = root(loser)
    parts = defaultdict(set)
    for player in parent:
        parts[root(player)].add(player)
    return list(parts.values())


def leaderboard(games: list[tuple[str, str]], *, prior: float = 0.5, resamples: int = 500,
                seed: int = 0) -> list[dict]:
    """Variants by Bradley–Terry score, with comparisons, wins, a 95 % bootstrap interval, and the group
    of variants each was compared with (1 = the group of the best variant) with its rank there."""
    if not games:
        return []
    scores = bradley_terry(games, prior=prior)
    rng = random.Random(seed)
    samples = defaultdict(list)
    for _ in range(resamples):
        refit = bradley_terry([games[rng.randrange(len(games))] for _ in games], prior=prior, iterations=200)
        for player in scores:
            if player in refit:
                samples[player].append(refit[player])
    played, won = Counter(), Counter()
    for winner, loser in games:
        played[winner] += 1
        played[loser] += 1
        won[winner] += 1
    ranked = sorted(scores.items(), key=lambda item: -item[1])
    group_of, rank_in_group, seen = {}, {}, Counter()
    parts = groups(games)
    for player, _ in ranked:
        part = next(i for i, members in enumerate(parts) if player in members)
        group_of.setdefault(part, len(group_of) + 1)
        seen[part] += 1
        rank_in_group[player] = (group_of[part], seen[part])
    rows = []
    for player, score in ranked:
        values = sorted(samples[player])
        interval = ([values[int(0.025 * (len(values) - 1))], values[int(0.975 * (len(values) - 1))]]
                    if len(values) >= 10 else None)
        rows.append({"variant": player, "score": round(score, 4),
                     "ci95": [round(v, 4) for v in interval] if interval else None,
                     "comparisons": played[player], "wins": won[player],
                     "win_rate": round(won[player] / played[player], 4),
                     "group": rank_in_group[player][0], "rank_in_group": rank_in_group[player][1]})
    return rows
