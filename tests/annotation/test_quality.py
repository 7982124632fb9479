"""Agreement and per-annotator quality figures from real reviews through the leased queue."""

import pytest

from accounts.services import user_create, vendor_create
from annotation.quality.agreement import gwet_ac1, gwet_ac2, krippendorff_alpha
from annotation.quality.quality import quality_report, scale_point
from annotation.quality.review import gold_mark, overlap_policy_set, review_claim, review_sides, review_submit
from annotation.workspace.judgements import Judgement

from ..helpers.preferences import judged_turns
from .conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_the_scale_runs_from_position_one_significantly_better_to_position_two_significantly_better():
    assert [scale_point(1, s) for s in ("significantly_better", "better", "slightly_better", "negligibly_better")] \
        == [1, 2, 3, 4]
    assert [scale_point(2, s) for s in ("negligibly_better", "slightly_better", "better", "significantly_better")] \
        == [5, 6, 7, 8]


def review_all(reviewer, decide):
    """Claim and submit every task the queue hands this reviewer; decide(task, a, b) → Judgement."""
    while (task := review_claim(reviewer=reviewer, gold_rate=0)) is not None:
        a, b = review_sides(task)
        review_submit(task=task, reviewer=reviewer, lease_token=task.lease_token, judgement=decide(task, a, b))


def pick_position(position, strength):
    return lambda task, a, b: Judgement(choice="A" if a.position == position else "B", strength=strength)


@pytest.fixture
def make_reviewed(offline_variants, settings):
    """Six turns by `author`, each re-judged by r0 (agrees), r1 (agrees but on the last turn) and r2
    (`r2`: "left" always picks the response shown as A; "contrary" agrees but on the first turn)."""
    return lambda r2="left": _reviewed(r2)


@pytest.fixture
def reviewed(make_reviewed):
    return make_reviewed("left")


def _reviewed(r2_rule):
    acme, beta = vendor_create(name="Acme Labeling"), vendor_create(name="Beta Data")
    author = user_create(username="author", password=PASSWORD, role="annotator", vendor=acme)
    r0 = user_create(username="r0", password=PASSWORD, role="annotator", vendor=acme)
    r1 = user_create(username="r1", password=PASSWORD, role="annotator", vendor=beta)
    r2 = user_create(username="r2", password=PASSWORD, role="annotator", vendor=beta)
    admin = user_create(username="boss", password=PASSWORD, role="admin")
    overlap_policy_set(admin=admin, focus="helpfulness", share=1.0, reviewers=3)
    turns = judged_turns(author, n=6)
    first = {t.pk: (t.chosen_generation.position, t.strength) for t in turns}

    def agree(task, a, b):  # the author's own answer
        position, strength = first[task.turn_id]
        return Judgement(choice="A" if a.position == position else "B", strength=strength)

    review_all(r0, agree)
    review_all(r1, lambda task, a, b: agree(task, a, b) if task.turn_id != turns[-1].pk
               else pick_position(3 - first[task.turn_id][0], "better")(task, a, b))
    if r2_rule == "left":
        review_all(r2, lambda task, a, b: Judgement(choice="A", strength="slightly_better"))
    else:
        review_all(r2, lambda task, a, b: agree(task, a, b) if task.turn_id != turns[0].pk
                   else pick_position(3 - first[task.turn_id][0], "better")(task, a, b))
    gold_mark(admin=admin, turn=turns[0], choice_generation_id=turns[0].chosen_generation_id)
    for reviewer in (r0, r1, r2):
        # Each already reviewed that turn: a gold item is never a second look at the same item.
        assert review_claim(reviewer=reviewer, gold_rate=1) is None
    return {"turns": turns, "first": first, "admin": admin}


def test_agreement_is_computed_on_pair_positions_with_intervals(reviewed):
    turns, first = reviewed["turns"], reviewed["first"]
    report = quality_report(resamples=200)
    overall = report["overall"]
    assert overall["items"] == 6 and overall["ratings"] == 24
    # The same figures from the table built by hand from what each reviewer was told to do.
    from annotation.models import ReviewTask

    table_choice, table_scale = [], []
    for turn in turns:
        position, strength = first[turn.pk]
        row_choice, row_scale = [position], [scale_point(position, strength)]
        for task in ReviewTask.objects.filter(turn=turn).select_related("chosen_generation").order_by("reviewer_id"):
            row_choice.append(task.chosen_generation.position)
            row_scale.append(scale_point(task.chosen_generation.position, task.strength))
        table_choice.append(row_choice)
        table_scale.append(row_scale)
    assert overall["ac1_choice"]["value"] == round(gwet_ac1(table_choice, categories=(1, 2)), 4)
    assert overall["ac2_quadratic"]["value"] == round(gwet_ac2(table_scale, categories=range(1, 9),
                                                                weights="quadratic"), 4)
    assert overall["alpha_scale_ordinal"]["value"] == round(
        krippendorff_alpha(table_scale, categories=range(1, 9), level="ordinal"), 4)
    low, high = overall["ac1_choice"]["ci95"]
    assert low <= overall["ac1_choice"]["value"] <= high
    # Within Acme (author and r0 agree on everything) agreement is perfect.
    assert report["by_vendor"]["acme-labeling"]["ac1_choice"]["value"] == 1.0
    assert report["by_vendor"]["beta-data"]["items"] == 6
    assert report["by_focus"]["safety"]["items"] == 0 and report["by_focus"]["safety"]["ac1_choice"]["value"] is None


def test_an_annotator_who_always_picks_the_left_response_shows_position_bias(reviewed):
    rows = {row["annotator"]: row for row in quality_report(resamples=10)["annotators"]}
    assert rows["r2"]["position_bias_a"] == 1.0
    # Six of six on the left: Wilson 95 % interval 0.610–1.0 leaves out 0.5, so r2 is flagged; a bare
    # share could not tell 6 of 6 from 1 of 1.
    assert rows["r2"]["position_bias"] == {"share": 1.0, "ci95": [0.6097, 1.0], "n": 6, "biased": True}
    for name in ("author", "r0", "r1"):
        bias = rows[name]["position_bias"]
        low, high = bias["ci95"]
        assert bias["biased"] == (not low <= 0.5 <= high)
    assert rows["author"]["ratings"] == rows["r1"]["ratings"] == 6 and rows["r0"]["vendor"] == "acme-labeling"


def test_agreement_with_the_majority_of_the_other_raters(make_reviewed):
    make_reviewed("contrary")
    rows = {row["annotator"]: row for row in quality_report(resamples=10)["annotators"]}
    # On the last turn r1 stands alone against three, on the first r2 does; elsewhere all agree.
    assert rows["author"]["agreement_with_majority"] == rows["r0"]["agreement_with_majority"] == 1.0
    assert rows["r1"]["agreement_with_majority"] == rows["r2"]["agreement_with_majority"] == round(5 / 6, 4)
    assert rows["r1"]["majority_items"] == 6


def test_gold_accuracy_flags_an_annotator_below_the_threshold(offline_variants, settings):
    settings.GOLD_MIN_ITEMS, settings.GOLD_FLAG_THRESHOLD = 2, 0.7
    author = user_create(username="author", password=PASSWORD, role="annotator")
    careful = user_create(username="careful", password=PASSWORD, role="annotator")
    careless = user_create(username="careless", password=PASSWORD, role="annotator")
    admin = user_create(username="boss", password=PASSWORD, role="admin")
    for turn in judged_turns(author, n=3):
        gold_mark(admin=admin, turn=turn, choice_generation_id=turn.chosen_generation_id, strength=turn.strength)
    for reviewer, right in ((careful, True), (careless, False)):
        while (task := review_claim(reviewer=reviewer, gold_rate=1)) is not None:
            a, b = review_sides(task)
            gold = task.turn.gold
            correct_side = "A" if a.pk == gold.expected_generation_id else "B"
            side = correct_side if right else ("B" if correct_side == "A" else "A")
            review_submit(task=task, reviewer=reviewer, lease_token=task.lease_token,
                          judgement=Judgement(choice=side, strength=gold.expected_strength))
    rows = {row["annotator"]: row for row in quality_report(resamples=10)["annotators"]}
    assert rows["careful"]["gold_answers"] == 3 and rows["careful"]["gold_accuracy"] == 1.0
    assert not rows["careful"]["flagged"]
    assert rows["careless"]["gold_accuracy"] == 0.0 and rows["careless"]["flagged"]


@pytest.mark.django_db
def test_the_quality_report_carries_each_annotators_reliability(reviewed):
    rows = {row["annotator"]: row for row in quality_report(resamples=10)["annotators"]}
    # Six turns rated by four: the first is a gold item now, so it is not a guessed overlap item.
    assert all(rows[name]["reliability"]["ratings"] == 5 for name in ("author", "r0", "r1", "r2"))
    # The author and r0 agree on everything, so nobody is rated above them. (r1 leaves them on one turn
    # and r2 takes whatever is shown as A; sides are drawn afresh per review, so r2 may side with r1 on
    # that turn and with everyone elsewhere, which makes the two camps exactly symmetric: a tie.)
    accuracy = {name: rows[name]["reliability"]["accuracy"] for name in ("author", "r0", "r1", "r2")}
    assert accuracy["author"] == accuracy["r0"] >= max(accuracy["r1"], accuracy["r2"])
