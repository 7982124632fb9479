"""Runs by owner: a run is cancelled by the researcher who launched it (or launched it again) or by an
admin, not by any researcher; launches, cancels, relaunches and serves are in the audit trail admins
read (who, what, when)."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import AuditEntry
from accounts.services import user_create
from training.launch import run_launch, run_relaunch
from training.models import Checkpoint, TrainingRun

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _api(user) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return api


@pytest.fixture
def people(researcher):
    return {"owner": researcher, "other": user_create(username="res2", password=PASSWORD, role="researcher"),
            "admin": user_create(username="boss", password=PASSWORD, role="admin"),
            "annotator": user_create(username="ann2", password=PASSWORD, role="annotator")}


@pytest.fixture
def queued(preference_batch, people, tiny_base, undispatched):
    batch = str(preference_batch(helpfulness=8))
    return lambda who="owner": run_launch(researcher=people[who], kind="reward_model", focus="helpfulness",
                                          batches=[batch], base=tiny_base)


def test_another_researcher_cannot_cancel_a_run_its_owner_and_admins_can(people, queued, client):
    run = queued()
    refused = _api(people["other"]).post(f"/api/training/runs/{run.pk}/cancel/")
    assert refused.status_code == 403 and "Only the researcher who launched this run" in refused.json()["detail"]
    assert _api(people["annotator"]).post(f"/api/training/runs/{run.pk}/cancel/").status_code == 403
    # The page says so too, and shows no cancel button to someone else.
    client.login(username="res2", password=PASSWORD)
    assert "Cancel run" not in client.get(f"/training/runs/{run.pk}/").content.decode()
    page = client.post(f"/training/runs/{run.pk}/cancel/", HTTP_HX_REQUEST="true")
    assert page.status_code == 403 and "Only the researcher who launched this run" in page.content.decode()
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.QUEUED
    assert _api(people["owner"]).post(f"/api/training/runs/{run.pk}/cancel/").json()["status"] == "cancelled"
    second = queued()
    assert _api(people["admin"]).post(f"/api/training/runs/{second.pk}/cancel/").json()["status"] == "cancelled"


def test_a_relaunch_belongs_to_whoever_relaunched_it(people, queued):
    run = queued()
    _api(people["owner"]).post(f"/api/training/runs/{run.pk}/cancel/")
    again = run_relaunch(run=run, researcher=people["other"])
    assert again.launched_by == people["other"]
    assert _api(people["owner"]).post(f"/api/training/runs/{again.pk}/cancel/").status_code == 403
    assert _api(people["other"]).post(f"/api/training/runs/{again.pk}/cancel/").status_code == 200


def test_launch_cancel_relaunch_and_serve_are_in_the_audit_trail_admins_read(people, queued, tiny_model_dir,
                                                                              settings):
    run = queued()
    _api(people["admin"]).post(f"/api/training/runs/{run.pk}/cancel/")
    again = run_relaunch(run=run, researcher=people["other"])
    settings.POLICY_SERVING = "external"
    policy = Checkpoint.objects.create(name="rs-1", kind=Checkpoint.Kind.POLICY, path=str(tiny_model_dir))
    served = _api(people["other"]).post(f"/api/training/checkpoints/{policy.pk}/serve/", {
        "name": "rs-one", "base_url": "http://vllm-cool:8000/v1", "model_name": "rs-one"}, format="json")
    assert served.status_code == 201, served.content
    trail = [(e.actor_name, e.action, e.object_type, e.object_id) for e in AuditEntry.objects.order_by("pk")]
    assert trail == [("res", "training.launch", "training.trainingrun", str(run.pk)),
                     ("boss", "training.cancel", "training.trainingrun", str(run.pk)),
                     ("res2", "training.relaunch", "training.trainingrun", str(again.pk)),
                     ("res2", "training.serve", "training.checkpoint", str(policy.pk))]
    answer = _api(people["admin"]).get("/api/audit/")
    assert answer.status_code == 200 and answer.json()["count"] == 4
    newest = answer.json()["results"][0]
    assert newest["action"] == "training.serve" and "awaiting an admin's approval" in newest["summary"]
    assert newest["at"] and newest["actor_name"] == "res2"
    only = _api(people["admin"]).get("/api/audit/?action=training.cancel").json()
    assert [e["actor_name"] for e in only["results"]] == ["boss"]
    # Researchers and annotators do not read it.
    assert _api(people["owner"]).get("/api/audit/").status_code == 403
    assert _api(people["annotator"]).get("/api/audit/").status_code == 403
