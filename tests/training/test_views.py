"""The researchers' dashboard and API: the same launch rules through both doors."""

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token

from accounts.services import user_create
from training.checkpoints import checkpoint_register
from training.models import Checkpoint, RunMetric, TrainingRun

from .conftest import FAST, PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, researcher):
    client.login(username="res", password=PASSWORD)
    return client


def evaluation(overall, per_strength, focus_rows):
    return {"pairs": 40, "accuracy": {"overall": overall}, "accuracy_per_strength": per_strength,
            "table": focus_rows, "histograms": {"chosen": {"edges": [0, 1, 2], "counts": [3, 7]},
                                                "rejected": {"edges": [-2, -1, 0], "counts": [6, 4]}}}


def test_only_researchers_see_the_dashboard(client, researcher):
    user_create(username="ann2", password=PASSWORD, role="annotator")
    client.login(username="ann2", password=PASSWORD)
    assert client.get(reverse("training:dashboard")).status_code == 403
    client.logout()
    client.login(username="res", password=PASSWORD)
    response = client.get(reverse("training:dashboard"))
    assert response.status_code == 200 and b"Train a reward model" in response.content


def test_the_launch_form_shows_the_services_refusal_and_stores_nothing(logged_in, preference_batch, tiny_base,
                                                                     undispatched):
    preference_batch(helpfulness=8)
    response = logged_in.post(reverse("training:dashboard"), {
        "focus": "safety", "base": tiny_base.pk, "other_focus": "secondary", "margin_table": "small",
        "learning_rate": "1e-5", "epochs": "1", "max_length": "512", "batch_size": "8",
        "per_device_batch_size": "8", "seed": "0"})
    assert response.status_code == 400
    assert "Pick at least one frozen batch or imported source." in response.content.decode()
    assert not TrainingRun.objects.exists() and not undispatched


def test_the_launch_form_queues_a_run_and_shows_its_page(logged_in, preference_batch, tiny_base, undispatched,
                                                         django_capture_on_commit_callbacks):
    batch = preference_batch(helpfulness=8)
    form = {"focus": "helpfulness", "batches": [str(batch)], "base": tiny_base.pk, "other_focus": "secondary",
            "margin_table": "large", "name": "first try", **{k: str(v) for k, v in FAST.items()}, "seed": "3"}
    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in.post(reverse("training:dashboard"), form)
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("training:run", args=[run.pk])
    assert run.config["margin_table"] == "large" and run.config["seed"] == 3 and run.name == "first try"
    assert undispatched == [(run.pk,)]
    # While it runs the live part polls; its curves come from the stored metric lines.
    TrainingRun.objects.filter(pk=run.pk).update(status="running", step=2, max_steps=4)
    RunMetric.objects.bulk_create([RunMetric(run=run, step=s, values={"loss": 1 / s, "accuracy": 0.5, "margin": 0.1})
                                   for s in (1, 2)])
    page = logged_in.get(reverse("training:run", args=[run.pk])).content.decode()
    assert 'hx-trigger="every 1s"' in page and "Cancel run" in page and page.count("<polyline") == 3
    dashboard = logged_in.get(reverse("training:dashboard")).content.decode()
    assert 'hx-get="/training/runs/"' in dashboard and 'value="0.500"' in dashboard  # polling list, progress
    response = logged_in.post(reverse("training:run_cancel", args=[run.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "cancelling" in response.content.decode()
    TrainingRun.objects.filter(pk=run.pk).update(status="cancelled")
    page = logged_in.get(reverse("training:run", args=[run.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in page and "Cancel run" not in page  # a finished run stops polling
    response = logged_in.post(reverse("training:run_cancel", args=[run.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 409 and "already cancelled" in response.content.decode()


def test_checkpoint_page_and_two_reward_models_side_by_side(logged_in, tiny_model_dir):
    a = checkpoint_register(name="rm-a", kind="reward_model", focus="helpfulness", path=tiny_model_dir,
                            evaluation=evaluation(63.2, {"significantly_better": 80.7, "better": 67.5,
                                                         "slightly_better": 60.9, "negligibly_better": 54.7},
                                                  {"helpfulness": {"significantly_better": 80.7, "better": 67.5,
                                                                   "slightly_better": 60.9,
                                                                   "negligibly_better": 54.7, "average": 63.2}}))
    b = checkpoint_register(name="rm-b", kind="reward_model", focus="safety", path=tiny_model_dir,
                            evaluation=evaluation(64.5, {"significantly_better": 94.3}, {}))
    Checkpoint.objects.filter(pk=a.pk).update(evaluation={**a.evaluation, "length_bias": {
        "chosen_longer": {"accuracy": 91.5, "pairs": 47}, "chosen_shorter": {"accuracy": 38.2, "pairs": 34}}})
    page = logged_in.get(reverse("training:checkpoint", args=[a.pk])).content.decode()
    for figure in ("80.7", "67.5", "60.9", "54.7", "63.2"):
        assert f"<td>{figure}</td>" in page
    assert "Length bias: 91.5 %" in page and "38.2 %" in page and "(47 pairs)" in page
    assert "<svg" in page and "chosen" in page and "rejected" in page
    page = logged_in.get(reverse("training:compare"), {"a": a.pk, "b": b.pk}).content.decode()
    assert page.index("rm-a") < page.index("rm-b") and "94.3" in page and "80.7" in page and page.count("<svg") == 2
    assert logged_in.get(reverse("training:compare"), {"a": a.pk, "b": a.pk}).status_code == 404


def test_the_api_launches_lists_shows_and_cancels(client, researcher, preference_batch, tiny_base, undispatched,
                                                  django_capture_on_commit_callbacks):
    batch = preference_batch(helpfulness=8)
    headers = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=researcher).key}"}
    url = reverse("api-training-runs")
    refused = client.post(url, {"focus": "helpfulness", "batches": [str(batch)], "base": "tiny-llama",
                                "settings": {"learning_rate": 7}}, content_type="application/json", **headers)
    assert refused.status_code == 400 and "learning_rate" in refused.json()["settings"]
    assert not TrainingRun.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(url, {"focus": "helpfulness", "batches": [str(batch)], "base": "tiny-llama",
                                    "mix": {"primary_share": 0.5}, "settings": FAST}, content_type="application/json",
                              **headers)
    assert created.status_code == 201, created.content
    run_id = created.json()["id"]
    assert created.json()["status"] == "queued" and undispatched == [(run_id,)]
    assert [r["id"] for r in client.get(url, **headers).json()["results"]] == [run_id]
    detail = client.get(reverse("api-training-run", args=[run_id]), **headers).json()
    assert detail["config"]["learning_rate"] == 3e-3 and set(detail["series"]) >= {"loss", "accuracy", "margin"}
    cancel = reverse("api-training-run-cancel", args=[run_id])
    assert client.post(cancel, **headers).json()["status"] == "cancelled"
    assert client.post(cancel, **headers).status_code == 409


def test_the_api_refuses_other_roles(client, preference_batch):
    preference_batch(helpfulness=2)
    token = Token.objects.create(user=user_create(username="a3", password=PASSWORD, role="annotator"))
    annotator = {"HTTP_AUTHORIZATION": f"Token {token.key}"}
    for name in ("api-training-runs", "api-training-checkpoints"):
        assert client.get(reverse(name), **annotator).status_code == 403
    assert client.post(reverse("api-training-runs"), {"focus": "helpfulness"}, content_type="application/json",
                       **annotator).status_code == 403
    assert client.get(reverse("api-training-runs")).status_code in (401, 403)


def test_a_failed_run_is_launched_again_from_its_page_and_the_command(logged_in, client, preference_batch, tiny_base,
                                                                      researcher, undispatched):
    from io import StringIO

    from django.core.management import call_command

    from training.launch import run_launch

    batch = preference_batch(helpfulness=8)
    run = run_launch(researcher=researcher, kind="reward_model", focus="helpfulness",
                     batches=[str(batch)], base=tiny_base, name="rm",
                     settings=FAST)
    page = logged_in.get(reverse("training:run", args=[run.pk])).content.decode()
    assert "Launch again" not in page  # queued: nothing to repeat yet
    assert logged_in.post(reverse("training:run_relaunch", args=[run.pk])).status_code == 409
    TrainingRun.objects.filter(pk=run.pk).update(status="failed", error="No heartbeat since …",
                                                 data={**run.data, "written": {"train_pairs": 6}})
    assert "Launch again" in logged_in.get(reverse("training:run", args=[run.pk])).content.decode()
    response = logged_in.post(reverse("training:run_relaunch", args=[run.pk]))
    again = TrainingRun.objects.exclude(pk=run.pk).get()
    assert response.status_code == 302 and response["Location"] == reverse("training:run", args=[again.pk])
    assert again.relaunch_of_id == run.pk and again.status == "queued" and "written" not in again.data
    assert f"run #{run.pk}" in logged_in.get(response["Location"]).content.decode()
    # A second click while the relaunch is queued is refused, with the reason on the page.
    twice = logged_in.post(reverse("training:run_relaunch", args=[run.pk]))
    assert twice.status_code == 409 and f"launched again already, as run {again.pk}" in twice.content.decode()
    TrainingRun.objects.filter(pk=again.pk).update(status="failed")
    out = StringIO()
    call_command("training", "relaunch", str(run.pk), "--researcher", "res", stdout=out)
    assert TrainingRun.objects.filter(relaunch_of=run).count() == 2 and "queued again" in out.getvalue()
    user_create(username="ann3", password=PASSWORD, role="annotator")
    client.logout()
    client.login(username="ann3", password=PASSWORD)
    assert client.post(reverse("training:run_relaunch", args=[run.pk])).status_code == 403


def test_a_rejection_sampling_run_shows_its_reward_curves(logged_in, researcher, tiny_base):
    curve = {"n": [1, 2, 3], "max": [0.5, 1.5, 2.0], "median": [0.5, 0.9, 0.8], "prompts": [4, 4, 4]}
    run = TrainingRun.objects.create(kind="rejection_sampling", config={}, data={}, base=tiny_base,
                                     launched_by=researcher, status="succeeded",
                                     summary={"job": {"curves": {"1.3": curve, "0.7": {**curve, "max": [0.4] * 3}}}})
    page = logged_in.get(reverse("training:run", args=[run.pk])).content.decode()
    # Figure 7 per temperature (max and median), Figure 8 across them (one max line each).
    assert page.count("Reward among the first N samples · T") == 4 and "per temperature" in page  # title, label
    section = page[page.index('id="reward-curves"'):]
    assert section.count("<polyline") == 6 and "samples (N)" in section
    token = Token.objects.create(user=researcher).key
    body = logged_in.get(reverse("api-training-run", args=[run.pk]), HTTP_AUTHORIZATION=f"Token {token}").json()
    assert body["reward_curves"]["1.3"] == curve
    other = TrainingRun.objects.create(kind="sft", config={}, data={}, base=tiny_base, launched_by=researcher,
                                       summary={"job": {"curves": {"1.0": curve}}})
    assert 'id="reward-curves"' not in logged_in.get(reverse("training:run", args=[other.pk])).content.decode()
