"""The human-vote leaderboard: Bradley–Terry from judgements, with bootstrap intervals."""

import math
import random

import pytest

from accounts.services import user_create
from annotation.models import Turn
from training.leaderboard import bradley_terry, comparisons, groups, leaderboard, style_controlled, style_counts

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


def test_the_prior_links_every_two_variants_including_those_that_never_met():
    # A and B met, C and D met, the two groups never did. The prior must act between all four, so
    # the fit is the MM fixed point of the data plus `prior` virtual wins each way for every pair:
    #   W_i + prior·(n − 1) = Σ_j (n_ij + 2·prior) · p_i / (p_i + p_j)   over all j ≠ i.
    games = [("A", "B")] * 6 + [("B", "A")] * 2 + [("C", "D")] * 3 + [("D", "C")]
    prior = 0.5
    scores = bradley_terry(games, prior=prior, tolerance=1e-13, iterations=5000)
    strength = {k: math.exp(v) for k, v in scores.items()}
    met = {("A", "B"): 8, ("C", "D"): 4}
    wins = {"A": 6, "B": 2, "C": 3, "D": 1}
    for i in strength:
        expected = sum((met.get(tuple(sorted((i, j))), 0) + 2 * prior) * strength[i] / (strength[i] + strength[j])
                       for j in strength if j != i)
        assert wins[i] + prior * 3 == pytest.approx(expected, rel=1e-6), i


def test_variants_that_never_met_are_reported_as_groups_ranked_within():
    games = [("A", "B")] * 5 + [("C", "D")] * 2 + [("D", "C")] + [("E", "C")]
    assert sorted(sorted(g) for g in groups(games)) == [["A", "B"], ["C", "D", "E"]]
    rows = {row["variant"]: row for row in leaderboard(games, resamples=20)}
    assert rows["A"]["group"] != rows["C"]["group"]
    assert rows["A"]["group"] == rows["B"]["group"] and rows["C"]["group"] == rows["E"]["group"]
    assert (rows["A"]["rank_in_group"], rows["B"]["rank_in_group"]) == (1, 2)
    assert sorted(rows[v]["rank_in_group"] for v in "CDE") == [1, 2, 3]
    # Group 1 is the group of the top-ranked variant.
    top = max(rows.values(), key=lambda row: row["score"])
    assert top["group"] == 1 and top["rank_in_group"] == 1


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
    assert data["groups"] == 1 and {row["group"] for row in data["leaderboard"]} == {1}
    page = client.get(reverse("training:leaderboard")).content.decode()
    assert 'id="leaderboard"' in page and "cool" in page
    assert 'id="leaderboard-groups"' not in page  # one group: no warning
    # The style-controlled fit beside the plain one, on the page and in the JSON (and the API's).
    assert set(data["style"]["coefficients"]) == {"words", "headers", "list_items", "bold"}
    assert all({"style_score", "style_ci95", "style_rank"} <= set(row) for row in data["leaderboard"])
    assert "Style-controlled" in page and 'id="style-coefficients"' in page
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=get_user_model().objects.get(username="res")).key
    api = client.get(reverse("api-training-leaderboard"), HTTP_AUTHORIZATION=f"Token {token}").json()
    assert api["style"] == data["style"] and api["leaderboard"] == data["leaderboard"]


def test_style_counts_by_hand():
    text = "# Title\n\nSome **bold** words and __more__.\n\n- one\n- two\n1. three\n  * nested\n## Sub"
    assert style_counts(text) == (len(text.split()), 2, 4, 2)
    assert style_counts("") == (0, 0, 0, 0)
    assert style_counts("Not a #header and not - a list") == (8, 0, 0, 0)


def test_style_control_separates_a_taste_for_length_from_the_variants_strength():
    """Two variants of equal strength; annotators pick the longer answer 80 % of the time; "long"
    writes long answers 80 % of the time, "short" 20 %. The plain fit ranks "long" well above;
    the style-controlled fit finds them close and puts the weight on length."""
    rng = random.Random(3)
    games = []
    for _ in range(3000):
        texts = {name: "word " * (40 if rng.random() < share else 8) for name, share in (("long", 0.8), ("short", 0.2))}
        if texts["long"] == texts["short"]:
            winner = rng.choice(["long", "short"])
        else:
            longer = max(texts, key=lambda name: len(texts[name]))
            winner = longer if rng.random() < 0.8 else ({"long", "short"} - {longer}).pop()
        loser = "short" if winner == "long" else "long"
        games.append((winner, loser, texts[winner], texts[loser]))
    plain = bradley_terry([game[:2] for game in games])
    controlled, coefficients, _, _ = style_controlled(games)
    assert plain["long"] - plain["short"] > 0.6  # the length taste, read as strength
    assert abs(controlled["long"] - controlled["short"]) < 0.15
    assert coefficients["words"] > 1.0 and abs(coefficients["headers"]) < 1e-6
    # Without any style difference the two fits agree on the order and nearly on the gap.
    flat = [(winner, loser, "same", "same") for winner, loser in [("a", "b")] * 30 + [("b", "a")] * 10]
    scores, *_ = style_controlled(flat)
    assert scores["a"] > scores["b"]
    assert scores["a"] - scores["b"] == pytest.approx(math.log(3), abs=0.1)
