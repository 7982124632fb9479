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

Style control (Chatbot Arena's, Chiang et al. 2024): beside the plain fit, a Bradley–Terry fit with
covariates for how the two answers differ in style, P(w beats l) = σ(β_w − β_l + γ·s), where s holds,
per feature (answer words, markdown headers, list items, bold spans), the normalised difference
(x_w − x_l) / (x_w + x_l) (0 when neither has any), scaled to unit root-mean-square over the
comparisons. β is a variant's strength once style is accounted for (centred on 0), γ how much each
style difference moves a vote by itself. Fitted by Newton's method with a ridge penalty (the prior's
role); intervals by the same bootstrap.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict

from annotation.quality.anomaly import votes
from core.statistics import bradley_terry


def comparisons(*, batch=None, with_text: bool = False) -> list[tuple[str, ...]]:
    """(winner, loser) variant names, one per judged two-variant pair; with ``with_text`` also the
    two answers, (winner, loser, winner's text, loser's text). The votes of the quality room's
    anomaly scores, without who cast them."""
    return [(row[1], row[2], *row[4:]) for row in votes(batch=batch, with_text=with_text)]


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
        rows.append({"variant": player, "score": round(score, 4), "ci95": _percentile_interval(samples[player]),
                     "comparisons": played[player], "wins": won[player],
                     "win_rate": round(won[player] / played[player], 4),
                     "group": rank_in_group[player][0], "rank_in_group": rank_in_group[player][1]})
    return rows


STYLE_FEATURES = ("words", "headers", "list_items", "bold")
_HEADER = re.compile(r"^ {0,3}#{1,6}\s", re.MULTILINE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")


def style_counts(text: str) -> tuple[int, int, int, int]:
    """An answer's words, markdown headers, list items and bold spans (STYLE_FEATURES' order)."""
    text = text or ""
    return len(text.split()), len(_HEADER.findall(text)), len(_LIST_ITEM.findall(text)), len(_BOLD.findall(text))


def _style_design(games: list[tuple[str, str, str, str]]):
    """(variant names, design matrix): per comparison +1 for the winner, −1 for the loser, then the
    scaled style differences (winner minus loser)."""
    import numpy as np

    players = sorted({name for game in games for name in game[:2]})
    index = {name: i for i, name in enumerate(players)}
    width = len(players)
    x = np.zeros((len(games), width + len(STYLE_FEATURES)))
    for row, (winner, loser, winner_text, loser_text) in enumerate(games):
        x[row, index[winner]] += 1.0
        x[row, index[loser]] -= 1.0
        for k, (a, b) in enumerate(zip(style_counts(winner_text), style_counts(loser_text))):
            x[row, width + k] = (a - b) / (a + b) if a + b else 0.0
    scale = np.sqrt((x[:, width:] ** 2).mean(axis=0)) if len(games) else np.ones(len(STYLE_FEATURES))
    x[:, width:] /= np.where(scale > 0, scale, 1.0)
    return players, x


def _style_fit(x, width: int, *, ridge: float, iterations: int = 100, tolerance: float = 1e-9):
    """Newton's method on the penalised log-likelihood Σ log σ(x·θ) − ridge/2·|θ|²."""
    import numpy as np

    theta = np.zeros(x.shape[1])
    penalty = ridge * np.eye(x.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ theta)))
        gradient = x.T @ (1.0 - p) - ridge * theta
        hessian = (x * (p * (1.0 - p))[:, None]).T @ x + penalty
        step = np.linalg.solve(hessian, gradient)
        theta += step
        if np.abs(step).max() < tolerance:
            break
    strengths = theta[:width] - theta[:width].mean()
    return strengths, theta[width:]


def style_controlled(games: list[tuple[str, str, str, str]], *, ridge: float = 0.5, resamples: int = 0,
                     seed: int = 0) -> tuple[dict[str, float], dict[str, float], dict[str, list[float]],
                                             dict[str, list[float]]]:
    """From (winner, loser, winner's text, loser's text) comparisons: {variant: strength with style
    accounted for, centred on 0}, {feature: coefficient per unit of its scaled difference}, and with
    ``resamples`` the bootstrap samples of each ({variant: [...]}, {feature: [...]})."""
    import numpy as np

    players, x = _style_design(games)
    if not players:
        return {}, {}, {}, {}
    width = len(players)
    strengths, coefficients = _style_fit(x, width, ridge=ridge)
    samples, coefficient_samples = defaultdict(list), defaultdict(list)
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        refit, refit_coefficients = _style_fit(x[rng.integers(0, len(games), len(games))], width, ridge=ridge)
        for i, name in enumerate(players):
            samples[name].append(float(refit[i]))
        for k, feature in enumerate(STYLE_FEATURES):
            coefficient_samples[feature].append(float(refit_coefficients[k]))
    return ({name: float(strengths[i]) for i, name in enumerate(players)},
            {feature: float(coefficients[k]) for k, feature in enumerate(STYLE_FEATURES)},
            dict(samples), dict(coefficient_samples))


def _percentile_interval(values: list[float]) -> list[float] | None:
    values = sorted(values)
    if len(values) < 10:
        return None
    return [round(values[int(0.025 * (len(values) - 1))], 4), round(values[int(0.975 * (len(values) - 1))], 4)]


def leaderboard_read(*, batch=None, resamples: int = 300, style_resamples: int = 100, seed: int = 0) -> dict:
    """The leaderboard the page and the API show: the plain fit's rows, each with its style-controlled
    score, interval and rank beside them, and the style coefficients."""
    games = comparisons(batch=batch, with_text=True)
    rows = leaderboard([game[:2] for game in games], resamples=resamples, seed=seed)
    style = {"features": list(STYLE_FEATURES), "coefficients": None, "coefficients_ci95": None}
    if rows:
        scores, coefficients, samples, coefficient_samples = style_controlled(games, resamples=style_resamples,
                                                                               seed=seed)
        ranked = sorted(scores, key=lambda name: -scores[name])
        for row in rows:
            name = row["variant"]
            row.update(style_score=round(scores[name], 4), style_ci95=_percentile_interval(samples.get(name, [])),
                       style_rank=ranked.index(name) + 1)
        style.update(coefficients={k: round(v, 4) for k, v in coefficients.items()},
                     coefficients_ci95={k: _percentile_interval(v) for k, v in coefficient_samples.items()})
        style["rows"] = [{"feature": k.replace("_", " "), "coefficient": style["coefficients"][k],
                          "ci95": style["coefficients_ci95"].get(k)} for k in STYLE_FEATURES]
    return {"batch": str(batch) if batch else None, "leaderboard": rows,
            "groups": max((row["group"] for row in rows), default=0), "style": style}
