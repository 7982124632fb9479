"""Anomalous annotators from their votes (Chatbot Arena's per-vote p-values under the others'
Bradley–Terry fit, combined with Fisher's method): careful annotators pass, a spammer and an
adversary are flagged, on simulated votes of variants with known strengths; and the quality page
and API show it."""

import math
import random

import pytest

from annotation.quality.anomaly import anomaly_scores, votes
from annotation.quality.quality import quality_report

STRENGTHS = {"v1": 1.2, "v2": 0.6, "v3": 0.0, "v4": -0.6, "v5": -1.2}


def simulated_votes(*, careful: int, spammers: int, adversaries: int, each: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    names = list(STRENGTHS)
    cast, turn = [], 0
    kinds = ["careful"] * careful + ["spammer"] * spammers + ["adversary"] * adversaries
    for annotator, kind in enumerate(kinds):
        for _ in range(each):
            a, b = rng.sample(names, 2)
            p_a = 1 / (1 + math.exp(STRENGTHS[b] - STRENGTHS[a]))
            if kind == "careful":
                a_wins = rng.random() < p_a
            elif kind == "spammer":
                a_wins = rng.random() < 0.5
            else:  # the adversary prefers the worse side
                a_wins = STRENGTHS[a] < STRENGTHS[b]
            turn += 1
            cast.append((annotator, a, b, turn) if a_wins else (annotator, b, a, turn))
    return cast, kinds


def test_careful_annotators_pass_and_a_spammer_and_an_adversary_are_flagged():
    cast, kinds = simulated_votes(careful=8, spammers=1, adversaries=1, each=80)
    scores = anomaly_scores(cast, alpha=0.001, min_votes=20)
    flagged = {annotator for annotator, row in scores.items() if row["flagged"]}
    assert flagged == {8, 9}, {a: (kinds[a], scores[a]["p_value"]) for a in scores}
    assert all(scores[a]["votes"] == 80 for a in scores)
    assert scores[9]["against_fit"] == 80  # the adversary always took the side the fit found less likely
    careful_p = [scores[a]["p_value"] for a in range(8)]
    assert min(careful_p) > 0.001 and max(careful_p) > 0.2


def test_too_few_votes_are_never_flagged_and_unknown_variants_say_nothing():
    cast, _ = simulated_votes(careful=6, spammers=0, adversaries=1, each=10)
    scores = anomaly_scores(cast, alpha=0.001, min_votes=20)
    assert not any(row["flagged"] for row in scores.values())
    only_mine = [(0, "new-a", "new-b", 1), (1, "v1", "v2", 2), (2, "v2", "v1", 3)]
    assert anomaly_scores(only_mine, alpha=0.001, min_votes=1)[0] == {"votes": 0, "against_fit": 0,
                                                                       "p_value": None, "flagged": False}


@pytest.mark.django_db
def test_the_quality_report_and_page_carry_each_annotators_anomaly(offline_variants, client):
    from django.urls import reverse

    from accounts.services import user_create

    from ..helpers.preferences import judged_turns

    ann = user_create(username="ann", password="a-long-password-9", role="annotator")
    bob = user_create(username="bob", password="a-long-password-9", role="annotator")
    judged_turns(ann, n=10)
    judged_turns(bob, n=10, seed=1, start=10)
    cast = votes()
    mine = [vote for vote in cast if vote[0] == ann.pk]
    assert mine and len(cast) > len(mine)
    rows = {row["annotator"]: row for row in quality_report(resamples=10)["annotators"]}
    # Neither took part in a review: listed for their votes, each judged by the other's fit.
    assert rows["ann"]["ratings"] == 0 and rows["ann"]["anomaly"]["votes"] == len(mine)
    assert 0 < rows["ann"]["anomaly"]["p_value"] <= 1 and rows["ann"]["anomaly"]["flagged"] is False
    user_create(username="adm", password="a-long-password-9", role="admin")
    client.login(username="adm", password="a-long-password-9")
    page = client.get(reverse("annotation:quality")).content.decode()
    assert "Votes against the field" in page and 'class="anomaly"' in page


def test_each_annotator_is_judged_by_a_fit_of_the_others_votes_alone():
    """The scores taken from everyone's counts minus the annotator's own equal a fit of the others'
    votes made from scratch (the p-values are those of the naive computation)."""
    from core.statistics import bradley_terry, fisher_combined, outcome_p_value

    cast, _ = simulated_votes(careful=4, spammers=1, adversaries=1, each=40, seed=5)
    scores = anomaly_scores(cast, alpha=0.001, min_votes=20)
    for annotator in {vote[0] for vote in cast}:
        strengths = bradley_terry([(c, o) for a, c, o, _ in cast if a != annotator])
        p_values = [outcome_p_value(1 / (1 + math.exp(strengths[o] - strengths[c])), random.Random(t).random())
                    for a, c, o, t in cast if a == annotator]
        assert scores[annotator]["p_value"] == pytest.approx(fisher_combined(p_values), rel=1e-3)
