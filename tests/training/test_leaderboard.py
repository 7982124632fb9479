"""The human-vote leaderboard: Bradley–Terry from judgements, with bootstrap intervals."""

import math
import random

import pytest

from accounts.services import user_create
from annotation.models import Turn
from training.leaderboard import bradley_terry, comparisons, leaderboard

from ..helpers.preferences import judged_turns


def test_bradley_terry_by_hand():
    # A beat B three times and lost once: the MLE odds are 3 : 1, so log p_A − log p_B = ln 3,
    # centred at 0 (geometric mean 1): ±ln(3)/2.
    scores = bradley_terry([("A", "B")] * 3 + [("B", "A")], prior=0)
    assert scores["A"] == pytest.approx(math.log(3) / 2, abs=1e-6)
    assert scores["B"] == pytest.approx(-math.log(3) / 2, abs=1e-6)
    # An unbeaten variant stays finite with the prior: one virtual win each way → odds 3.5 : 0.5.
    scores = bradley_terry([("A", "B")] * 3, prior=0.5)
    assert scores["A"] - scores["B"] == pytest.approx(math.log(7), abs=1e-6)


def test_known_strengths_are_recovered_with_intervals():
    rng = random.Random(0)
    strength = {"v1": 1.0, "v2": 2.0, "v3": 4.0}
    games = []
    for _ in range(3000):
        a, b = rng.sample(sorted(strength), 2)
        games.append((a, b) if rng.random() < strength[a] / (strength[a] + strength[b]) else (b, a))
    rows = leaderboard(games, prior=0, resamples=100)
    assert [row["variant"] for row in rows] == ["v3", "v2", "v1"]
    by_name = {row["variant"]: row for row in rows}
    assert by_name["v3"]["score"] - by_name["v1"]["score"] == pytest.approx(math.log(4), abs=0.15)
    for row in rows:
        low, high = row["ci95"]
        assert low <= row["score"] <= high
    assert sum(row["wins"] for row in rows) == 3000


@pytest.mark.django_db
def test_comparisons_come_from_judged_two_variant_pairs(offline_variants):
    annotator = user_create(username="ann", password="a-long-password-9", role="annotator")
    judged_turns(annotator, n=12)
    games = comparisons()
    two_variant = [t for t in Turn.objects.select_related("chosen_generation__variant")
                   if len({g.variant_id for g in t.pair.generations.all()}) == 2]
    assert len(games) == len(two_variant) > 0
    assert sorted(w for w, _ in games) == sorted(t.chosen_generation.variant.name for t in two_variant)


@pytest.mark.django_db
def test_the_leaderboard_page_and_json(client, offline_variants):
    from django.urls import reverse

    judged_turns(user_create(username="ann", password="a-long-password-9", role="annotator"), n=10)
    user_create(username="res", password="a-long-password-9", role="researcher")
    client.login(username="res", password="a-long-password-9")
    data = client.get(reverse("training:leaderboard"), {"format": "json"}).json()
    assert {row["variant"] for row in data["leaderboard"]} <= {"cool", "warm"}
    assert sum(row["wins"] for row in data["leaderboard"]) == len(comparisons())
    page = client.get(reverse("training:leaderboard")).content.decode()
    assert 'id="leaderboard"' in page and "cool" in page
