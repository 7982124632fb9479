"""Anomalous annotators from their votes alone (Chatbot Arena's method, Chiang et al. 2024, 5.2):
each vote of an annotator for one variant over another gets a p-value under the Bradley–Terry fit
of everyone else's votes (how unlikely a vote this way was), and an annotator's p-values are
combined with Fisher's method. A careful annotator's votes look like everyone's: their combined
p-value is spread over (0, 1). A spammer's or an adversary's go against the field more often than
the fit expects, and their combined p-value falls towards 0; below ANOMALY_ALPHA (after at least
ANOMALY_MIN_VOTES votes) the annotator is flagged.

Each vote's p-value is randomised (core.statistics.outcome_p_value) so that it is uniform under the
fit, seeded by the turn, so the figure is the same at every read.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

from django.conf import settings
from django.db.models import F

from core.statistics import bradley_terry_counts, fisher_combined, game_counts, outcome_p_value

from ..models import Turn


def votes(*, batch=None, focus: str | None = None, with_text: bool = False) -> list[tuple]:
    """(annotator id, chosen variant, other variant, turn id), one per judged two-variant pair, by
    turn; with ``with_text`` also the two answers (chosen's text, other's text). The human-vote
    leaderboard reads its comparisons here too."""
    from modelserving.models import Generation

    judged = Turn.objects.filter(submitted_at__isnull=False, chosen_generation__isnull=False)
    if batch is not None:
        judged = judged.filter(batch=batch)
    if focus:
        judged = judged.filter(dialogue__focus=focus)
    fields = ["pair__turn__dialogue__annotator_id", "pair__turn__chosen_generation__variant__name",
              "variant__name", "pair__turn__id"]
    if with_text:
        fields += ["pair__turn__chosen_generation__text", "text"]
    rows = (Generation.objects.filter(pair__turn__in=judged).exclude(pk=F("pair__turn__chosen_generation_id"))
            .order_by("pair__turn__id").values_list(*fields))
    return [row for row in rows if row[1] != row[2]]


def anomaly_scores(cast: list[tuple], *, prior: float = 0.5, alpha: float | None = None,
                   min_votes: int | None = None) -> dict[int, dict]:
    """{annotator: {"votes", "against_fit" (votes for the side the fit found less likely),
    "p_value" (Fisher's), "flagged"}}; each annotator's votes judged by the fit of the others'."""
    alpha = settings.ANOMALY_ALPHA if alpha is None else alpha
    min_votes = settings.ANOMALY_MIN_VOTES if min_votes is None else min_votes
    by_annotator = defaultdict(list)
    for annotator, chosen, other, turn in cast:
        by_annotator[annotator].append((chosen, other, turn))
    # Everyone's counts once; each annotator's own are taken out of them, and their fit starts from
    # everyone's (it is nearly the same fit, so it converges in a few iterations).
    wins, meetings = game_counts((chosen, other) for _, chosen, other, _ in cast)
    everyone = bradley_terry_counts(wins, meetings, prior=prior)
    scores = {}
    for annotator, own in by_annotator.items():
        own_wins, own_meetings = game_counts((chosen, other) for chosen, other, _ in own)
        strengths = bradley_terry_counts(wins - own_wins, meetings - own_meetings, prior=prior, start=everyone)
        p_values, against = [], 0
        for chosen, other, turn in own:
            if chosen not in strengths or other not in strengths:
                continue  # a variant only this annotator has seen: the others say nothing about it
            q = 1.0 / (1.0 + math.exp(strengths[other] - strengths[chosen]))
            against += q < 0.5
            p_values.append(outcome_p_value(q, random.Random(turn).random()))
        combined = fisher_combined(p_values)
        scores[annotator] = {
            "votes": len(p_values), "against_fit": against,
            "p_value": None if combined is None else float(f"{combined:.4g}"),
            "flagged": bool(combined is not None and len(p_values) >= min_votes and combined < alpha)}
    return scores
