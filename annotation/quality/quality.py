"""Data-quality figures from overlap reviews and gold checks: inter-rater agreement per batch,
focus and vendor, and per-annotator agreement with the majority, gold accuracy, position bias and
speed.

Every judged turn with at least one submitted review is an *item*; its ratings are the first
judgement and the reviews. A rating is read in pair terms, never screen terms (sides are drawn
afresh per review): the *choice* is the position (1 or 2) of the chosen generation in its pair,
and the *scale* puts choice and strength on one ordinal 8-point line, 1 = position 1 significantly
better … 4 = position 1 negligibly better, 5 = position 2 negligibly better … 8 = position 2
significantly better. Pairs marked both unusable are not ratings.

Per vendor, agreement is measured among the raters of that vendor (items with two of its raters).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings

from core.statistics import share_with_interval

from ..models import GoldItem, ReviewTask, Strength, Turn
from .agreement import bootstrap_ci, gwet_ac1, gwet_ac2, krippendorff_alpha
from .anomaly import anomaly_scores, votes
from .reliability import one_coin

STRENGTH_RANK = {Strength.SIGNIFICANTLY_BETTER: 0, Strength.BETTER: 1, Strength.SLIGHTLY_BETTER: 2,
                 Strength.NEGLIGIBLY_BETTER: 3}
CHOICES = (1, 2)
SCALE = tuple(range(1, 9))
NO_VENDOR = "(no vendor)"


def scale_point(position: int, strength: str) -> int:
    rank = STRENGTH_RANK[strength]
    return 1 + rank if position == 1 else 8 - rank


@dataclass(frozen=True)
class Rating:
    rater: int
    vendor: str
    choice: int  # position of the chosen generation in its pair
    scale: int
    chose_left: bool  # the response shown as A was chosen
    time_spent_ms: int | None


def _rating(row: dict, *, rater_key: str, vendor_key: str, left_key: str) -> Rating | None:
    if row["both_unusable"] or not row["chosen_generation__position"]:
        return None
    position = row["chosen_generation__position"]
    return Rating(rater=row[rater_key], vendor=row[vendor_key] or NO_VENDOR, choice=position,
                  scale=scale_point(position, row["strength"]), chose_left=row["chosen_generation_id"] == row[left_key],
                  time_spent_ms=row["time_spent_ms"])


def ratings(*, batch=None, focus: str | None = None) -> dict[int, list[Rating]]:
    """{turn id: [first judgement, reviews…]} for judged turns with at least one review."""
    reviews = ReviewTask.objects.filter(status=ReviewTask.Status.DONE)
    if batch is not None:
        reviews = reviews.filter(turn__batch=batch)
    if focus:
        reviews = reviews.filter(turn__dialogue__focus=focus)
    common = ("chosen_generation_id", "chosen_generation__position", "strength", "both_unusable", "time_spent_ms")
    items: dict[int, list[Rating]] = defaultdict(list)
    review_rows = list(reviews.values("turn_id", "reviewer_id", "reviewer__profile__vendor__slug",
                                      "left_generation_id", *common))
    turns = Turn.objects.filter(pk__in={row["turn_id"] for row in review_rows}).order_by("pk")
    for row in turns.values("pk", "dialogue__annotator_id", "dialogue__annotator__profile__vendor__slug",
                            "left_generation_id", *common):
        first = _rating(row, rater_key="dialogue__annotator_id",
                        vendor_key="dialogue__annotator__profile__vendor__slug", left_key="left_generation_id")
        if first:
            items[row["pk"]].append(first)
    for row in review_rows:
        rating = _rating(row, rater_key="reviewer_id", vendor_key="reviewer__profile__vendor__slug",
                         left_key="left_generation_id")
        if rating and row["turn_id"] in items:
            items[row["turn_id"]].append(rating)
    return {turn: rated for turn, rated in items.items() if len(rated) >= 2}


def _with_ci(statistic, table, resamples: int, seed: int) -> dict:
    value = statistic(table)
    interval = bootstrap_ci(statistic, table, n_resamples=resamples, seed=seed) if value is not None else None
    return {"value": None if value is None else round(value, 4),
            "ci95": None if interval is None else [round(interval[0], 4), round(interval[1], 4)]}


def agreement(items: dict[int, list[Rating]], *, resamples: int = 500, seed: int = 0) -> dict:
    """AC1 on the choice, AC2 on the 8-point scale (linear and quadratic weights), Krippendorff's α
    beside them, each with a percentile bootstrap 95 % interval over items."""
    choices = [[r.choice for r in rated] for rated in items.values()]
    scale = [[r.scale for r in rated] for rated in items.values()]
    return {
        "items": len(items),
        "ratings": sum(len(rated) for rated in items.values()),
        "ac1_choice": _with_ci(lambda t: gwet_ac1(t, categories=CHOICES), choices, resamples, seed),
        "ac2_linear": _with_ci(lambda t: gwet_ac2(t, categories=SCALE, weights="linear"), scale, resamples, seed),
        "ac2_quadratic": _with_ci(lambda t: gwet_ac2(t, categories=SCALE, weights="quadratic"), scale, resamples,
                                  seed),
        "alpha_choice_nominal": _with_ci(lambda t: krippendorff_alpha(t, categories=CHOICES, level="nominal"),
                                         choices, resamples, seed),
        "alpha_scale_ordinal": _with_ci(lambda t: krippendorff_alpha(t, categories=SCALE, level="ordinal"),
                                        scale, resamples, seed),
        "alpha_scale_interval": _with_ci(lambda t: krippendorff_alpha(t, categories=SCALE, level="interval"),
                                         scale, resamples, seed),
    }


def by_vendor(items: dict[int, list[Rating]]) -> dict[str, dict[int, list[Rating]]]:
    groups: dict[str, dict[int, list[Rating]]] = defaultdict(dict)
    for turn, rated in items.items():
        per_vendor = defaultdict(list)
        for rating in rated:
            per_vendor[rating.vendor].append(rating)
        for vendor, own in per_vendor.items():
            if len(own) >= 2:
                groups[vendor][turn] = own
    return dict(sorted(groups.items()))


def _gold_answers(batch=None, focus=None) -> dict[int, list[tuple[bool, bool]]]:
    """{reviewer: [(chose the expected response?, and the expected strength where one is set?), …]} of
    their gold answers."""
    gold = ReviewTask.objects.filter(kind=ReviewTask.Kind.GOLD, status=ReviewTask.Status.DONE)
    if batch is not None:
        gold = gold.filter(turn__batch=batch)
    if focus:
        gold = gold.filter(turn__dialogue__focus=focus)
    answers = defaultdict(list)
    for reviewer, chosen, strength, expected, expected_strength in gold.values_list(
            "reviewer_id", "chosen_generation_id", "strength", "turn__gold__expected_generation_id",
            "turn__gold__expected_strength"):
        position = chosen == expected
        answers[reviewer].append((position, position and (not expected_strength or strength == expected_strength)))
    return answers


def annotators(items: dict[int, list[Rating]], *, batch=None, focus=None) -> list[dict]:
    """Per annotator: agreement with the majority of the other raters, gold accuracy, position bias
    (share of choices of the response shown as A, with its Wilson 95 % interval; `biased` when the
    interval leaves out 0.5), median time per judgement, their reliability (the one-coin Dawid–Skene
    estimate of choosing the better response, from overlap and gold: reliability.py) and the anomaly
    of their votes against everyone else's Bradley–Terry fit (anomaly.py). Every annotator with a
    rating, a gold answer or a vote is listed."""
    from django.contrib.auth import get_user_model

    with_majority, agreed = defaultdict(int), defaultdict(int)
    stats = defaultdict(lambda: {"ratings": 0, "chose_left": 0, "times": []})
    for rated in items.values():
        for rating in rated:
            entry = stats[rating.rater]
            entry["vendor"] = rating.vendor
            entry["ratings"] += 1
            entry["chose_left"] += rating.chose_left
            if rating.time_spent_ms is not None:
                entry["times"].append(rating.time_spent_ms)
            others = [r.choice for r in rated if r is not rating]
            top = max(set(others), key=others.count)
            if len(others) >= 2 and others.count(top) * 2 > len(others):  # a strict majority of the others
                with_majority[rating.rater] += 1
                agreed[rating.rater] += rating.choice == top
    gold_answers = _gold_answers(batch, focus)
    gold = {rater: [right for _, right in answers] for rater, answers in gold_answers.items()}
    anomaly = anomaly_scores(votes(batch=batch, focus=focus))
    # Gold items enter the reliability model once, with their truth known (the position only); their
    # ratings are not also counted as overlap items whose truth the model has to guess.
    gold_turns = set(GoldItem.objects.values_list("turn_id", flat=True))
    reliability = one_coin({turn: [(r.rater, r.choice) for r in rated] for turn, rated in items.items()
                            if turn not in gold_turns},
                           gold={rater: [position for position, _ in answers]
                                 for rater, answers in gold_answers.items()})
    everyone = set(stats) | set(gold) | set(anomaly)
    names = dict(get_user_model().objects.filter(pk__in=everyone).values_list("pk", "username"))
    rows = []
    for rater in sorted(everyone, key=lambda pk: names.get(pk, "")):
        entry = stats.get(rater, {"ratings": 0, "chose_left": 0, "times": [], "vendor": None})
        answers = gold.get(rater, [])
        accuracy = sum(answers) / len(answers) if answers else None
        rows.append({
            "annotator": names.get(rater), "vendor": entry.get("vendor"), "ratings": entry["ratings"],
            "majority_items": with_majority[rater],
            "agreement_with_majority": round(agreed[rater] / with_majority[rater], 4) if with_majority[rater] else None,
            "gold_answers": len(answers), "gold_accuracy": None if accuracy is None else round(accuracy, 4),
            "position_bias_a": round(entry["chose_left"] / entry["ratings"], 4) if entry["ratings"] else None,
            "position_bias": share_with_interval(entry["chose_left"], entry["ratings"]),
            "median_time_ms": statistics.median(entry["times"]) if entry["times"] else None,
            "flagged": bool(accuracy is not None and len(answers) >= settings.GOLD_MIN_ITEMS
                            and accuracy < settings.GOLD_FLAG_THRESHOLD),
            "reliability": reliability.get(rater),
            "anomaly": anomaly.get(rater),
        })
    return rows


def quality_report(*, batch=None, focus: str | None = None, resamples: int = 500) -> dict:
    items = ratings(batch=batch, focus=focus)
    per_focus = {}
    if not focus:
        for name in ("helpfulness", "safety"):
            per_focus[name] = agreement(ratings(batch=batch, focus=name), resamples=resamples)
    return {
        "batch": str(batch) if batch else None,
        "focus": focus,
        "overall": agreement(items, resamples=resamples),
        "by_focus": per_focus,
        "by_vendor": {vendor: agreement(group, resamples=resamples) for vendor, group in by_vendor(items).items()},
        "annotators": annotators(items, batch=batch, focus=focus),
        "gold_flag": {"threshold": settings.GOLD_FLAG_THRESHOLD, "min_items": settings.GOLD_MIN_ITEMS},
        "anomaly_flag": {"alpha": settings.ANOMALY_ALPHA, "min_votes": settings.ANOMALY_MIN_VOTES},
    }
