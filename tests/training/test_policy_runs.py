"""Policy runs through the same launch path as reward models: validation, an SFT run through the
real worker registering a policy checkpoint, and — in a slow test — the whole Llama 2 loop."""

import pytest
from django.core.exceptions import ValidationError

from annotation.demonstrations import services as demonstrations
from modelserving.models import PolicyVariant
from training.launch import run_launch
from training.models import Checkpoint, TrainingRun

from ..conftest import wait_for
from .conftest import FAST, served_pair

TINY_SFT = {"learning_rate": 1e-3, "epochs": 1, "max_length": 128, "per_device_batch_size": 2,
            "gradient_accumulation_steps": 1, "gradient_checkpointing": "false"}


def refreshed(run):
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_policy_launches_are_checked_and_refusals_store_nothing(preference_batch, researcher, tiny_base):
    batch = preference_batch(helpfulness=4)
    cases = [
        ({"kind": "kto"}, "kind"),
        ({"kind": "sft", "batches": [str(batch)]}, "batches"),  # no demonstrations in it
        ({"kind": "sft", "batches": ["2030-W01"]}, "batches"),
        ({"kind": "ppo", "batches": [str(batch)]}, "helpfulness_rm"),
        ({"kind": "ppo", "batches": [str(batch)], "helpfulness_rm": "nope"}, "helpfulness_rm"),
        ({"kind": "rejection_sampling", "batches": [str(batch)], "variant": "ghost"}, "variant"),
        ({"kind": "gatt", "batches": [str(batch)], "instructions": ["  "]}, "instructions"),
        ({"kind": "policy_eval", "batches": [str(batch)], "variants": ["cool"]}, "variants"),
        ({"kind": "ppo", "batches": [str(batch)], "settings": {"kl_coef": 5}}, "kl_coef"),
        ({"kind": "sft", "batches": [str(batch)], "settings": {"warp_speed": 9}}, "warp_speed"),
        ({"kind": "sft", "batches": [str(batch)], "settings": {"trainable_layers": -1}}, "trainable_layers"),
        ({"kind": "reward_model", "focus": "helpfulness", "batches": [str(batch)],
          "settings": {"trainable_layers": -1}},
         "trainable_layers"),
    ]
    for arguments, field in cases:
        with pytest.raises(ValidationError) as refused:
            run_launch(researcher=researcher, base=tiny_base, **arguments)
        assert field in refused.value.message_dict, (arguments, refused.value.message_dict)
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(600)
def test_an_sft_run_on_demonstrations_registers_a_policy_checkpoint(celery_worker, preference_batch, researcher,
                                                                   tiny_base, django_user_model, monkeypatch):
    annotator = django_user_model.objects.get(username="ann")
    for i in range(6):
        demonstrations.demonstration_write(annotator=annotator, prompt=f"Say hello number {i}.",
                                       answer=f"Hello number {i}, gladly!")
    batch = preference_batch(helpfulness=2)
    run = run_launch(researcher=researcher, kind="sft", batches=[str(batch)], base=tiny_base, name="sft-1",
                            settings=TINY_SFT)
    wait_for(lambda: refreshed(run).is_finished, timeout=400, message="the SFT run")
    assert run.status == "succeeded", (run.error, run.log_tail[-3000:])
    assert run.data["written"] == {"demonstrations": 6} and run.metrics.exists()
    checkpoint = Checkpoint.objects.get(run=run)
    assert checkpoint.kind == "policy" and checkpoint.base == tiny_base and checkpoint.name == f"sft-1-run{run.pk}"
    assert checkpoint.lineage["batches"] == [str(batch)] and checkpoint.lineage["kind"] == "sft"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(1200)
def test_the_whole_loop_judgements_to_a_new_variant(celery_worker, preference_batch, researcher, tiny_base,
                                                     variant_factory, model_servers, monkeypatch):
    """Judgements → frozen batch → reward model → rejection-sampling round → new variant → a pair
    sampled from it, all through the platform's own paths on the embedded stack."""
    batch = preference_batch(helpfulness=40, safety=8)
    PolicyVariant.objects.update(is_active=False)  # the batch's variants were never reachable
    rm_run = run_launch(researcher=researcher, kind="reward_model", focus="helpfulness",
                        batches=[str(batch)], base=tiny_base, settings=FAST)
    wait_for(lambda: refreshed(rm_run).is_finished, timeout=400, message="the reward model")
    assert rm_run.status == "succeeded", rm_run.error
    reward_model = Checkpoint.objects.get(run=rm_run)
    variant_factory("tiny-live", model_servers[0], max_new_tokens=8)
    rs_run = run_launch(researcher=researcher, kind="rejection_sampling", batches=[str(batch)],
                               base=tiny_base, variant="tiny-live", helpfulness_rm=reward_model.name,
                               settings={**TINY_SFT, "k": 2, "max_new_tokens": 8})
    wait_for(lambda: refreshed(rs_run).is_finished, timeout=600, message="the rejection-sampling round")
    assert rs_run.status == "succeeded", (rs_run.error, rs_run.log_tail[-3000:])
    policy = Checkpoint.objects.get(run=rs_run)
    assert policy.lineage["reward_models"] == [reward_model.name]
    generations = served_pair(policy, researcher, monkeypatch, name="rlhf-v1", message="Hello again",
                              start_timeout=120)
    assert [g.status for g in generations] == ["done", "done"], [g.error for g in generations]
    assert {g.variant.name for g in generations} == {"rlhf-v1"}


@pytest.mark.django_db
def test_the_policy_page_api_and_run_page(client, preference_batch, researcher, tiny_base, tiny_model_dir,
                                          django_capture_on_commit_callbacks, monkeypatch):
    from django.urls import reverse
    from rest_framework.authtoken.models import Token

    from training.checkpoints import checkpoint_register
    from training.models import RunMetric

    sent = []
    monkeypatch.setattr("training.tasks.run_execute.apply_async", lambda args, **kwargs: sent.append(args))
    batch = preference_batch(helpfulness=4)
    rm = checkpoint_register(name="rm-h", kind="reward_model", focus="helpfulness", path=tiny_model_dir)
    client.login(username="res", password="a-long-password-9")
    refused = client.post(reverse("training:policy_launch"), {"kind": "ppo", "batches": [str(batch)],
                                                              "base": tiny_base.pk})
    assert refused.status_code == 400 and "reward model" in refused.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("training:policy_launch"), {
            "kind": "ppo", "batches": [str(batch)], "base": tiny_base.pk, "helpfulness_rm": "rm-h",
            "iterations": "3", "kl_coef": "0.02"})
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and sent == [(run.pk,)]
    assert run.config["iterations"] == 3 and run.config["kl_coef"] == 0.02  # the rest: the job's defaults
    assert run.config["learning_rate"] == 1e-6 and run.config["max_new_tokens"] == 256
    assert run.data["reward_models"] == {"helpfulness": rm.name}
    # The run page draws PPO's curves and the latest generations (model output through the sanitiser).
    TrainingRun.objects.filter(pk=run.pk).update(status="running", step=1, max_steps=3, summary={"samples": [
        {"step": 1, "rows": [{"prompt": "Hi", "response": "<img src=x onerror=alert(1)>**bold**", "reward": 0.5,
                              "is_safety": False}]}]})
    RunMetric.objects.create(run=run, step=1, values={"reward": 0.1, "kl": 0.01, "policy_loss": 0.2,
                                                       "value_loss": 0.3, "entropy": 2.0, "clip_frac": 0.1})
    page = client.get(reverse("training:run", args=[run.pk])).content.decode()
    assert page.count("<polyline") == 6 and "KL to the reference" in page
    assert "<strong>bold</strong>" in page and "<img" not in page  # shown as inert text, never a tag
    token = Token.objects.create(user=researcher).key
    created = client.post(reverse("api-training-policy-runs"), {
        "kind": "policy_eval", "batches": [str(batch)], "variants": ["cool", "warm"], "helpfulness_rm": "rm-h",
        "base": "tiny-llama"}, content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}")
    assert created.status_code == 201 and created.json()["kind"] == "policy_eval"
    TrainingRun.objects.filter(pk=created.json()["id"]).update(status="succeeded", summary={"evaluation": {
        "prompts": 10, "variants": ["cool", "warm"],
        "win_rate": {"helpfulness": {"cool": {"warm": 0.7}, "warm": {"cool": 0.3}}}}})
    page = client.get(reverse("training:run", args=[created.json()["id"]])).content.decode()
    assert 'id="win-rates"' in page and "70 %" in page and "30 %" in page
