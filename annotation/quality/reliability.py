"""Each annotator's reliability from the data: the one-coin Dawid–Skene model on the pair choice.

Why this model: a rating of a pair is a choice between two positions (plus a strength); what
decides whether it is useful is whether the annotator picks the better one. The one-coin model
gives each annotator one number, the probability a_j of choosing the better position, and learns
it from items several annotators rated (overlap reviews) without knowing which position is better:
EM alternates the posterior of each item's better position given everyone's ratings and their
current a_j (E), and each a_j as the expected share of their ratings that match it (M). Gold
answers enter with their truth known. A Beta(2, 2) prior keeps a_j off 0 and 1 with few ratings.
The strength is left to the agreement coefficients (AC2, α): a full 8×8 confusion matrix per
annotator needs far more overlap than a weekly batch has. Django-free.

The interval is Wilson's on the expected number of correct choices over the ratings and gold
answers counted: it reads the estimate as a share of that many trials.
"""

from __future__ import annotations

import math
from collections import defaultdict

from core.statistics import wilson


def _logistic(x: float) -> float:
    """1 / (1 + e^(−x)) without overflow (an item may carry hundreds of ratings)."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def one_coin(items: dict[object, list[tuple[object, int]]], *, gold: dict[object, list[bool]] | None = None,
             iterations: int = 100, tolerance: float = 1e-8, prior: tuple[float, float] = (2.0, 2.0)) -> dict:
    """{annotator: {"accuracy", "ci95", "ratings", "gold"}} from ``items`` ({item: [(annotator, chosen
    position 1 or 2), …]}, items with two or more ratings count) and ``gold`` ({annotator: [right?, …]})."""
    gold = gold or {}
    rated = {item: ratings for item, ratings in items.items() if len(ratings) >= 2}
    annotators = {annotator for ratings in rated.values() for annotator, _ in ratings} | set(gold)
    accuracy = {annotator: 0.8 for annotator in annotators}
    alpha, beta = prior
    posterior: dict[object, float] = {}
    for _ in range(iterations):
        # E: P(position 1 is the better one | the ratings), positions equally likely beforehand.
        for item, ratings in rated.items():
            log_one = log_two = 0.0
            for annotator, choice in ratings:
                right, wrong = math.log(accuracy[annotator]), math.log(1.0 - accuracy[annotator])
                log_one += right if choice == 1 else wrong
                log_two += right if choice == 2 else wrong
            posterior[item] = _logistic(log_one - log_two)
        # M: the expected share of right choices, gold answers included, under the Beta prior.
        expected, counted = defaultdict(float), defaultdict(int)
        for item, ratings in rated.items():
            for annotator, choice in ratings:
                expected[annotator] += posterior[item] if choice == 1 else 1.0 - posterior[item]
                counted[annotator] += 1
        change = 0.0
        for annotator in annotators:
            answers = gold.get(annotator, [])
            value = ((expected[annotator] + sum(answers) + alpha - 1)
                     / (counted[annotator] + len(answers) + alpha + beta - 2))
            value = min(max(value, 1e-6), 1 - 1e-6)
            change = max(change, abs(value - accuracy[annotator]))
            accuracy[annotator] = value
        if change < tolerance:
            break
    counts = defaultdict(int)
    for item_ratings in rated.values():
        for who, _ in item_ratings:
            counts[who] += 1
    result = {}
    for annotator in annotators:
        ratings = counts[annotator]
        n = ratings + len(gold.get(annotator, []))
        interval = wilson(round(accuracy[annotator] * n), n) if n else None
        result[annotator] = {"accuracy": round(accuracy[annotator], 4), "ratings": ratings,
                             "gold": len(gold.get(annotator, [])),
                             "ci95": [round(interval[0], 4), round(interval[1], 4)] if interval else None}
    return result
