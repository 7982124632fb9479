"""Overlap review through the leased queue, and gold checks."""

import threading
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.utils import timezone

from accounts.services import user_create
from annotation.models import GoldItem, ReviewTask, Strength
from annotation.quality.review import (
    LeaseLost,
    gold_mark,
    overlap_policy_set,
    review_claim,
    review_sides,
    review_submit,
)
from annotation.workspace.judgements import Judgement

from ..helpers.preferences import judged_turns
from .conftest import PASSWORD

A_BETTER = Judgement(choice="A", strength=Strength.BETTER)


@pytest.fixture
def people():
    make = lambda name, role="annotator": user_create(username=name, password=PASSWORD, role=role)  # noqa: E731
    return {"author": make("author"), "admin": make("boss", "admin"), **{f"r{i}": make(f"r{i}") for i in range(3)}}


@pytest.mark.django_db
def test_the_policy_samples_judged_turns_into_k_review_slots_with_sides_drawn_afresh(people, offline_variants):
    with pytest.raises(ValidationError) as refused:
        overlap_policy_set(admin=people["admin"], focus="helpfulness", share=1.5, reviewers=0)
    assert set(refused.value.message_dict) == {"share", "reviewers"}
    with pytest.raises(PermissionDenied):
        overlap_policy_set(admin=people["r0"], focus="helpfulness", share=1, reviewers=2)
    overlap_policy_set(admin=people["admin"], focus="helpfulness", share=1.0, reviewers=2)
    turns = judged_turns(people["author"], n=12)
    assert ReviewTask.objects.count() == 24
    assert sorted(ReviewTask.objects.filter(turn=turns[0]).values_list("slot", flat=True)) == [1, 2]
    # Sides are drawn per task: across many tasks some differ from the first judge's left side.
    assert any(t.left_generation_id != t.turn.left_generation_id for t in ReviewTask.objects.select_related("turn"))
    # Safety turns follow their own policy (none set: no review), and a share samples deterministically.
    judged_turns(people["author"], n=4, focus="safety", start=12)
    assert ReviewTask.objects.count() == 24
    overlap_policy_set(admin=people["admin"], focus="helpfulness", share=0.5, reviewers=1)
    half = judged_turns(people["author"], n=60, seed=5, start=20)
    sampled = ReviewTask.objects.filter(turn__in=half).count()
    assert 15 < sampled < 45


@pytest.mark.django_db
def test_a_reviewer_never_reviews_their_own_turn_or_the_same_item_twice(people, offline_variants):
    overlap_policy_set(admin=people["admin"], focus="helpfulness", share=1.0, reviewers=3)
    turns = judged_turns(people["author"], n=2)
    assert review_claim(reviewer=people["author"], gold_rate=0) is None  # only their own work is queued
    reviewer = people["r0"]
    seen = []
    while (task := review_claim(reviewer=reviewer, gold_rate=0)) is not None:
        assert review_claim(reviewer=reviewer, gold_rate=0) == task  # a claim returns the live lease
        seen.append(task.turn_id)
        review_submit(task=task, reviewer=reviewer, lease_token=task.lease_token, judgement=A_BETTER)
    assert sorted(seen) == sorted(t.pk for t in turns)  # one slot of each turn, then nothing


@pytest.mark.django_db
def test_the_review_shows_the_same_context_without_the_first_judgement_and_stores_its_own(people, offline_variants):
    overlap_policy_set(admin=people["admin"], focus="safety", share=1.0, reviewers=1)
    turn = judged_turns(people["author"], n=1, focus="safety")[0]
    task = review_claim(reviewer=people["r1"], gold_rate=0)
    a, b = review_sides(task)
    assert {a.pk, b.pk} == {g.pk for g in turn.pair.generations.all()} and a.pk == task.left_generation_id
    assert task.chosen_generation_id is None  # nothing of the first judgement is on the task
    with pytest.raises(ValidationError, match="Label both"):
        review_submit(task=task, reviewer=people["r1"], lease_token=task.lease_token, judgement=A_BETTER)
    with pytest.raises(ValidationError, match="safe response is always preferred"):
        review_submit(task=task, reviewer=people["r1"], lease_token=task.lease_token,
                      judgement=Judgement(choice="A", strength="better", safe_a=False, safe_b=True))
    done = review_submit(task=task, reviewer=people["r1"], lease_token=task.lease_token,
                         judgement=Judgement(choice="B", strength="slightly_better", safe_a=True, safe_b=True))
    assert done.status == "done" and done.chosen_generation_id == b.pk and done.safety_bin == "both_safe"
    assert done.lease_token is None


@pytest.mark.django_db
def test_an_expired_lease_returns_the_task_and_a_stale_submission_stores_nothing(people, offline_variants):
    overlap_policy_set(admin=people["admin"], focus="helpfulness", share=1.0, reviewers=1)
    judged_turns(people["author"], n=1)
    first = review_claim(reviewer=people["r0"], gold_rate=0)
    assert review_claim(reviewer=people["r1"], gold_rate=0) is None  # held by r0
    ReviewTask.objects.filter(pk=first.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(LeaseLost, match="expired"):
        review_submit(task=first, reviewer=people["r0"], lease_token=first.lease_token, judgement=A_BETTER)
    second = review_claim(reviewer=people["r1"], gold_rate=0)
    assert second.pk == first.pk and second.lease_token != first.lease_token
    # r0 comes back: the lease is r1's now; a made-up token does not help either.
    for token in (first.lease_token, "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(LeaseLost):
            review_submit(task=first, reviewer=people["r0"], lease_token=token, judgement=A_BETTER)
    task = ReviewTask.objects.get(pk=first.pk)
    assert task.status == "open" and task.reviewer is None and task.chosen_generation is None


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_get_the_same_task(offline_variants):
    admin = user_create(username="boss", password=PASSWORD, role="admin")
    author = user_create(username="author", password=PASSWORD, role="annotator")
    reviewers = [user_create(username=f"rev{i}", password=PASSWORD, role="annotator") for i in range(16)]
    overlap_policy_set(admin=admin, focus="helpfulness", share=1.0, reviewers=2)
    judged_turns(author, n=10)  # 20 tasks for 16 reviewers claiming at the same moment, twice each
    start = threading.Barrier(len(reviewers))
    claimed, errors = [], []

    def claim(reviewer):
        try:
            start.wait()
            for _ in range(2):
                task = review_claim(reviewer=reviewer, gold_rate=0)
                if task is not None:
                    claimed.append((reviewer.pk, task.pk, task.turn_id))
                    review_submit(task=task, reviewer=reviewer, lease_token=task.lease_token, judgement=A_BETTER)
        except Exception as error:  # noqa: BLE001 — reported below
            errors.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(r,)) for r in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    task_ids = [task for _, task, _ in claimed]
    assert len(task_ids) == len(set(task_ids)) == 20
    assert len({(reviewer, turn) for reviewer, _, turn in claimed}) == len(claimed)
    assert ReviewTask.objects.filter(status="done").count() == 20


@pytest.mark.django_db
def test_gold_items_are_served_blind_once_per_annotator(people, offline_variants):
    turn = judged_turns(people["author"], n=1)[0]
    expected = turn.chosen_generation_id
    with pytest.raises(ValidationError):
        gold_mark(admin=people["admin"], turn=turn, choice_generation_id=-1)
    gold_mark(admin=people["admin"], turn=turn, choice_generation_id=expected, strength="better")
    assert review_claim(reviewer=people["author"], gold_rate=1) is None  # not their own turn
    task = review_claim(reviewer=people["r0"], gold_rate=1)
    assert task.kind == "gold" and task.turn_id == turn.pk and task.assigned_to == people["r0"]
    review_submit(task=task, reviewer=people["r0"], lease_token=task.lease_token, judgement=A_BETTER)
    assert review_claim(reviewer=people["r0"], gold_rate=1) is None  # served once per annotator
    assert review_claim(reviewer=people["r1"], gold_rate=1).turn_id == turn.pk
    assert GoldItem.objects.count() == 1
