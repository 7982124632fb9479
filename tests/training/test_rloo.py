"""Online RL (RLOO) as a policy run kind: refused without a reward model on every door, and a run
through the real worker from a frozen batch's prompts to a served variant that samples a pair."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from rest_framework.authtoken.models import Token

from training.checkpoints import checkpoint_register
from training.launch import run_launch
from training.models import Checkpoint, TrainingRun
from training.selectors import run_series

from ..conftest import wait_for
from .conftest import PASSWORD, served_pair

TINY_RLOO = {"steps": 2, "prompts_per_step": 2, "k": 2, "max_new_tokens": 8, "learning_rate": 1e-3,
             "gradient_checkpointing": "no"}


def refreshed(run):
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_an_rloo_launch_needs_a_reward_model_on_every_door(client, preference_batch, researcher, tiny_base,
                                                           tiny_model_dir, undispatched,
                                                           django_capture_on_commit_callbacks):
    batch = preference_batch(helpfulness=4)
    client.login(username="res", password=PASSWORD)
    page = client.post(reverse("training:policy_launch"), {"kind": "rloo", "batches": [str(batch)],
                                                            "base": tiny_base.pk})
    assert page.status_code == 400 and "reward model" in page.content.decode()
    token = Token.objects.create(user=researcher).key
    api = client.post(reverse("api-training-policy-runs"), {"kind": "rloo", "batches": [str(batch)],
                                                            "base": "tiny-llama", "settings": {"k": 1}},
                      content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}")
    assert api.status_code == 400 and set(api.json()) >= {"helpfulness_rm", "k"}
    with pytest.raises(CommandError, match="reward model") as refused:
        call_command("training", "policy", "--researcher", "res", "--kind", "rloo", "--batch", str(batch))
    assert refused.value.returncode == 2 and not TrainingRun.objects.exists()
    checkpoint_register(name="rm-h", kind="reward_model", focus="helpfulness", path=tiny_model_dir)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("training", "policy", "--researcher", "res", "--kind", "rloo", "--batch", str(batch),
                     "--base", "tiny-llama", "--helpfulness-rm", "rm-h", "--setting", "kl_coef=0.05")
    run = TrainingRun.objects.get()
    assert run.kind == "rloo" and run.config["kl_coef"] == 0.05 and run.config["k"] == 4
    assert run.data["reward_models"] == {"helpfulness": "rm-h"} and undispatched == [(run.pk,)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(900)
def test_an_rloo_run_from_a_batch_to_a_served_variant(celery_worker, preference_batch, researcher, tiny_base,
                                                      tiny_model_dir, monkeypatch):
    batch = preference_batch(helpfulness=6, safety=2)
    rm = checkpoint_register(name="rm-s", kind="reward_model", focus="safety", path=tiny_model_dir)
    run = run_launch(researcher=researcher, kind="rloo", batches=[str(batch)], base=tiny_base, safety_rm=rm.name,
                     name="rloo-1", settings=TINY_RLOO)
    wait_for(lambda: refreshed(run).is_finished, timeout=500, message="the RLOO run")
    assert run.status == "succeeded", (run.error, run.log_tail[-3000:])
    assert run.summary["data"]["safety_prompts"] > 0 and run.summary["job"]["steps"] == 2
    series = run_series(run)
    assert len(series["raw_reward"]) == 2 and len(series["kl"]) == 2
    checkpoint = Checkpoint.objects.get(run=run)
    assert checkpoint.lineage["kind"] == "rloo" and checkpoint.lineage["reward_models"] == ["rm-s"]
    generations = served_pair(checkpoint, researcher, monkeypatch, name="rloo-v1", message="Tell me about rain.")
    assert [g.status for g in generations] == ["done", "done"], [g.error for g in generations]
    assert {g.variant.name for g in generations} == {"rloo-v1"}
