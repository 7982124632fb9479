"""The figures of a batch: what it holds, and where its data may be biased."""

from __future__ import annotations

from collections import Counter
from statistics import median

from django.db.models import Count

from core.statistics import share_with_interval

from ..models import Batch, Turn

LENGTH_BUCKETS = [0, 32, 64, 128, 256, 512, 1024, 2048]


def _bucket(tokens: int | None) -> str:
    if tokens is None:
        return "unknown"
    for low, high in zip(LENGTH_BUCKETS, LENGTH_BUCKETS[1:]):
        if tokens < high:
            return f"{low}–{high - 1}"
    return f"≥{LENGTH_BUCKETS[-1]}"


NO_VENDOR = "none"


def _vendor_filter(prefix: str, vendor: str) -> dict:
    """Rows of annotators of ``vendor`` (a slug; "none": annotators without one)."""
    if vendor == NO_VENDOR:
        return {f"{prefix}__profile__vendor__isnull": True}
    return {f"{prefix}__profile__vendor__slug": vendor}


def batch_statistics(batch: Batch, *, vendor: str | None = None) -> dict:
    """The batch's figures; with ``vendor``, those of that vendor's annotators only."""
    everyone = Turn.objects.filter(batch=batch, submitted_at__isnull=False)
    judged = everyone.filter(**_vendor_filter("dialogue__annotator", vendor)) if vendor else everyone
    by_vendor = {slug or NO_VENDOR: n for slug, n in everyone.values_list(
        "dialogue__annotator__profile__vendor__slug").annotate(n=Count("id")).order_by(
        "dialogue__annotator__profile__vendor__slug")}
    by_focus = dict(judged.values_list("dialogue__focus").annotate(n=Count("id")).order_by("dialogue__focus"))
    by_strength = Counter()
    by_bin = Counter()
    per_dialogue = Counter()
    left_chosen = Counter()
    with_choice = Counter()
    volume = Counter()
    appearances = Counter()
    wins = Counter()
    lengths = {"chosen": Counter(), "rejected": Counter()}
    token_counts = {"chosen": [], "rejected": []}
    rows = judged.values_list("id", "dialogue_id", "dialogue__annotator__username", "strength", "safety_bin",
                              "both_unusable", "chosen_generation_id", "left_generation_id").order_by("id")
    for (_turn_id, dialogue_id, annotator, strength, safety_bin, _unusable, chosen_id, left_id) in rows.iterator(
            chunk_size=5000):
        by_strength[strength or "both_unusable"] += 1
        if safety_bin:
            by_bin[safety_bin] += 1
        per_dialogue[dialogue_id] += 1
        volume[annotator] += 1
        if chosen_id is not None:
            with_choice[annotator] += 1
            left_chosen[annotator] += chosen_id == left_id
    from modelserving.models import Generation

    generations = Generation.objects.filter(pair__turn__batch=batch, pair__turn__submitted_at__isnull=False,
                                            pair__turn__chosen_generation__isnull=False)
    if vendor:
        generations = generations.filter(**_vendor_filter("pair__turn__dialogue__annotator", vendor))
    for variant, generation_id, chosen_id, tokens in generations.values_list(
            "variant__name", "id", "pair__turn__chosen_generation_id", "completion_tokens").iterator(chunk_size=5000):
        role = "chosen" if generation_id == chosen_id else "rejected"
        appearances[variant] += 1
        wins[variant] += role == "chosen"
        lengths[role][_bucket(tokens)] += 1
        if tokens is not None:
            token_counts[role].append(tokens)
    total_choices = sum(with_choice.values())
    return {
        "batch": str(batch),
        "status": batch.status,
        "vendor": vendor,
        "by_vendor": by_vendor,
        "judgements": sum(volume.values()),
        "by_focus": by_focus,
        "by_strength": dict(sorted(by_strength.items())),
        "by_safety_bin": dict(sorted(by_bin.items())),
        "turns_per_dialogue": dict(sorted(Counter(per_dialogue.values()).items())),
        "response_tokens": {
            role: {"buckets": {b: lengths[role][b] for b in _bucket_order() if lengths[role][b]},
                   "median": median(token_counts[role]) if token_counts[role] else None}
            for role in ("chosen", "rejected")},
        "variant_win_rate": {v: {"compared": appearances[v], "won": wins[v],
                                 "win_rate": round(wins[v] / appearances[v], 4)} for v in sorted(appearances)},
        "left_chosen_share": {
            "overall": round(sum(left_chosen.values()) / total_choices, 4) if total_choices else None,
            "per_annotator": {a: round(left_chosen[a] / n, 4) for a, n in sorted(with_choice.items())},
            # The Wilson 95 % interval of each share; an annotator whose interval leaves out 0.5 is flagged.
            "overall_interval": share_with_interval(sum(left_chosen.values()), total_choices),
            "per_annotator_interval": {a: share_with_interval(left_chosen[a], n)
                                       for a, n in sorted(with_choice.items())},
            "flagged": [a for a, n in sorted(with_choice.items()) if share_with_interval(left_chosen[a], n)["biased"]],
        },
        "per_annotator_volume": dict(sorted(volume.items(), key=lambda item: (-item[1], item[0]))),
    }


def _bucket_order():
    return [_bucket(low) for low in LENGTH_BUCKETS] + ["unknown"]


def charts(stats: dict) -> list[str]:
    from core.charts import bar_chart

    tokens = stats["response_tokens"]
    return [
        bar_chart("Judgements by focus", list(stats["by_focus"].items())),
        bar_chart("Judgements by strength", list(stats["by_strength"].items())),
        bar_chart("Safety bins", list(stats["by_safety_bin"].items())),
        bar_chart("Dialogues by number of judged turns", [(f"{k} turns", v)
                                                          for k, v in stats["turns_per_dialogue"].items()]),
        bar_chart("Chosen responses by length (tokens)", list(tokens["chosen"]["buckets"].items())),
        bar_chart("Rejected responses by length (tokens)", list(tokens["rejected"]["buckets"].items())),
        bar_chart("Win rate per policy variant", [(v, d["win_rate"]) for v, d in stats["variant_win_rate"].items()],
                  value_format="{:.0%}", max_value=1),
        bar_chart("Share choosing the left response (position bias)",
                  [("everyone", stats["left_chosen_share"]["overall"] or 0)]
                  + list(stats["left_chosen_share"]["per_annotator"].items()), value_format="{:.0%}", max_value=1),
        bar_chart("Judgements per annotator", list(stats["per_annotator_volume"].items())[:25]),
    ]



