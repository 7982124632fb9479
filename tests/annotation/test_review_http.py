"""Overlap review and quality through the pages and the API: the same services, the same refusals."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts.services import user_create
from annotation.models import OverlapPolicy, ReviewTask
from annotation.quality.review import overlap_policy_set

from ..helpers.preferences import judged_turns
from .conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(offline_variants):
    admin = user_create(username="boss", password=PASSWORD, role="admin")
    author = user_create(username="author", password=PASSWORD, role="annotator")
    overlap_policy_set(admin=admin, focus="helpfulness", share=1.0, reviewers=1)
    judged_turns(author, n=2)
    return user_create(username="rev", password=PASSWORD, role="annotator")


def test_a_reviewer_takes_judges_and_moves_on_in_the_page(client, queued):
    client.login(username="rev", password=PASSWORD)
    page = client.get(reverse("annotation:review")).content.decode()
    assert "2 review tasks waiting" in page and "Take the next review" in page
    client.post(reverse("annotation:review_claim"))
    task = ReviewTask.objects.get(leased_by=queued)
    page = client.get(reverse("annotation:review")).content.decode()
    assert str(task.lease_token) in page and 'id="judgement-form"' in page and "Tell me about" in page
    assert "Judged" not in page  # nothing of the first judgement
    response = client.post(reverse("annotation:review_submit", args=[task.pk]),
                           {"point": "2", "lease_token": str(task.lease_token)})
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.status == "done" and task.strength == "better" and task.chosen_generation_id == task.left_generation_id
    # The next task was claimed on the way back.
    assert ReviewTask.objects.filter(leased_by=queued, status="open").count() == 1


def test_a_submission_after_the_lease_expired_is_refused_with_409_and_stores_nothing(client, queued):
    client.login(username="rev", password=PASSWORD)
    client.post(reverse("annotation:review_claim"))
    task = ReviewTask.objects.get(leased_by=queued)
    ReviewTask.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    response = client.post(reverse("annotation:review_submit", args=[task.pk]),
                           {"point": "2", "lease_token": str(task.lease_token)})
    assert response.status_code == 409 and "expired" in response.content.decode()
    assert ReviewTask.objects.get(pk=task.pk).status == "open"


def test_the_review_api_claims_submits_and_refuses_a_stale_lease(client, queued):
    headers = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=queued).key}"}
    claimed = client.post(reverse("api-review-claim"), **headers).json()
    assert set(claimed) == {"id", "focus", "context", "response_a", "response_b", "lease_token", "lease_expires_at"}
    submit = reverse("api-review-submit", args=[claimed["id"]])
    wrong = client.post(submit, {"point": 1, "lease_token": "00000000-0000-0000-0000-000000000000"},
                        content_type="application/json", **headers)
    assert wrong.status_code == 409 and "nothing was stored" in wrong.json()["detail"]
    assert ReviewTask.objects.get(pk=claimed["id"]).status == "open"
    bad = client.post(submit, {"lease_token": claimed["lease_token"]}, content_type="application/json", **headers)
    assert bad.status_code == 400 and "choice" in bad.json()
    ok = client.post(submit, {"point": 8, "lease_token": claimed["lease_token"]}, content_type="application/json",
                     **headers)
    assert ok.status_code == 200 and ok.json()["status"] == "done"
    again = client.post(submit, {"point": 8, "lease_token": claimed["lease_token"]}, content_type="application/json",
                        **headers)
    assert again.status_code == 409
    # Someone else's task id: the same 409, nothing learnt.
    other = user_create(username="other", password=PASSWORD, role="annotator")
    other_headers = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=other).key}"}
    assert client.post(submit, {"point": 8, "lease_token": claimed["lease_token"]}, content_type="application/json",
                       **other_headers).status_code == 409


def test_quality_is_for_admins_and_sets_the_overlap(client, queued):
    researcher = user_create(username="res", password=PASSWORD, role="researcher")
    token = Token.objects.create(user=researcher).key
    assert client.get(reverse("api-quality"), HTTP_AUTHORIZATION=f"Token {token}").status_code == 403
    assert client.post(reverse("api-review-claim"), HTTP_AUTHORIZATION=f"Token {token}").status_code == 403
    client.login(username="boss", password=PASSWORD)
    page = client.get(reverse("annotation:quality"))
    assert page.status_code == 200 and "AC1" in page.content.decode()
    refused = client.post(reverse("annotation:quality"), {"focus": "safety", "share": "2", "reviewers": "3"})
    assert refused.status_code == 400 and "between 0 and 1" in refused.content.decode()
    client.post(reverse("annotation:quality"), {"focus": "safety", "share": "0.25", "reviewers": "3"})
    policy = OverlapPolicy.objects.get(focus="safety")
    assert (policy.share, policy.reviewers) == (0.25, 3)
    report = client.get(reverse("annotation:quality_json"), {"resamples": "20"}).json()
    assert report["overall"]["items"] == 0 and "annotators" in report


def test_an_admin_marks_a_judged_turn_as_gold_from_the_quality_page(client, queued):
    from annotation.models import GoldItem, Turn

    turn = Turn.objects.filter(submitted_at__isnull=False).first()
    client.login(username="boss", password=PASSWORD)
    client.post(reverse("annotation:gold_mark"), {"turn": "999999"})
    assert not GoldItem.objects.exists()
    client.post(reverse("annotation:gold_mark"), {"turn": str(turn.pk), "with_strength": "on"})
    gold = GoldItem.objects.get()
    assert gold.expected_generation_id == turn.chosen_generation_id and gold.expected_strength == turn.strength
    assert "1 gold item." in client.get(reverse("annotation:quality")).content.decode()
