"""DPO as a policy run kind: its launch rules (page, API, command), and a run through the real
worker from a frozen batch to a served variant that samples a pair."""

import json
import shutil

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from rest_framework.authtoken.models import Token

from training.checkpoints import checkpoint_register, tokenizer_fingerprint
from training.launch import run_launch
from training.models import Checkpoint, RunMetric, TrainingRun
from training.selectors import run_series

from ..conftest import wait_for
from .conftest import PASSWORD, served_pair

TINY_DPO = {"learning_rate": 5e-3, "epochs": 2, "max_length": 96, "per_device_batch_size": 4,
            "gradient_accumulation_steps": 1, "gradient_checkpointing": "no", "eval_steps": 2}


def refreshed(run):
    run.refresh_from_db()
    return run


@pytest.fixture
def other_tokenizer(tiny_model_dir, tmp_path):
    """The tiny model with one vocabulary entry renamed: same shapes, a different tokenizer."""
    folder = tmp_path / "other-tokenizer"
    shutil.copytree(tiny_model_dir, folder)
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    token = next(iter(vocab))
    vocab[token + "x"] = vocab.pop(token)
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    return checkpoint_register(name="other-tokenizer", kind="policy", path=folder)


@pytest.mark.django_db
def test_dpo_launches_are_checked_and_refusals_store_nothing(preference_batch, researcher, tiny_base,
                                                             other_tokenizer, tiny_model_dir):
    batch = preference_batch(helpfulness=8)  # no safety pairs
    same = checkpoint_register(name="same-tokenizer", kind="policy", path=tiny_model_dir)
    assert tokenizer_fingerprint(tiny_model_dir) == tokenizer_fingerprint(same.path)
    assert tokenizer_fingerprint(tiny_model_dir) != tokenizer_fingerprint(other_tokenizer.path)
    dpo = {"kind": "dpo", "batches": [str(batch)]}
    cases = [
        (dpo, "focus", "Pick helpfulness or safety"),
        ({**dpo, "focus": "safety"}, "batches", "no safety pairs"),
        ({**dpo, "focus": "helpfulness", "reference": "other-tokenizer"}, "reference", "tokenize differently"),
        ({**dpo, "focus": "helpfulness", "reference": "nope"}, "reference", "No policy"),
        ({**dpo, "focus": "helpfulness", "sources": ["hh"]}, "sources", "No imported source"),
        ({**dpo, "focus": "helpfulness", "settings": {"beta": 50}}, "beta", "between"),
        ({**dpo, "focus": "helpfulness", "settings": {"loss_type": "hinge"}}, "loss_type", "sigmoid, ipo, robust"),
        ({**dpo, "focus": "helpfulness", "settings": {"label_smoothing": 0.5}}, "label_smoothing", "between"),
        ({**dpo, "focus": "helpfulness", "settings": {"strength_rule": "loud"}}, "strength_rule", "drop_negligible"),
        ({"kind": "sft", "batches": [str(batch)], "focus": "helpfulness"}, "focus", "Only a DPO run"),
    ]
    for arguments, field, words in cases:
        with pytest.raises(ValidationError) as refused:
            run_launch(researcher=researcher, base=tiny_base, **arguments)
        assert words in " ".join(refused.value.message_dict.get(field, [])), (arguments, refused.value.message_dict)
    assert not TrainingRun.objects.exists()
    # The same tokenizer in another folder is a valid reference.
    run = run_launch(researcher=researcher, base=tiny_base, **dpo, focus="helpfulness", reference="same-tokenizer",
                     settings={"strength_rule": "weight", "loss_type": "robust", "label_smoothing": 0.1})
    assert run.focus == "helpfulness" and run.data["reference"] == "same-tokenizer"
    assert run.data["mix"]["primary_share"] == 0.5 and run.config["beta"] == 0.1
    assert (run.config["strength_rule"], run.config["loss_type"], run.config["label_smoothing"]) == (
        "weight", "robust", 0.1)


@pytest.mark.django_db
def test_dpo_refusals_on_the_page_the_api_and_the_command(client, preference_batch, researcher, tiny_base,
                                                          undispatched, django_capture_on_commit_callbacks):
    batch = preference_batch(helpfulness=8)
    client.login(username="res", password=PASSWORD)
    page = client.post(reverse("training:policy_launch"), {"kind": "dpo", "batches": [str(batch)],
                                                            "base": tiny_base.pk, "focus": "safety"})
    assert page.status_code == 400 and "no safety pairs" in page.content.decode()
    token = Token.objects.create(user=researcher).key
    api = client.post(reverse("api-training-policy-runs"), {"kind": "dpo", "batches": [str(batch)], "focus": "safety",
                                                            "base": "tiny-llama"},
                      content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}")
    assert api.status_code == 400 and "no safety pairs" in json.dumps(api.json())
    with pytest.raises(CommandError, match="no safety pairs") as refused:
        call_command("training", "policy", "--researcher", "res", "--kind", "dpo", "--batch", str(batch),
                     "--focus", "safety", "--base", "tiny-llama")
    assert refused.value.returncode == 2
    assert not TrainingRun.objects.exists()
    # Accepted the same three ways, with the settings the job's config bounds.
    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(reverse("training:policy_launch"), {"kind": "dpo", "batches": [str(batch)],
                                                                "base": tiny_base.pk, "focus": "helpfulness",
                                                                "beta": "0.2", "strength_rule": "all"})
        api = client.post(reverse("api-training-policy-runs"), {
            "kind": "dpo", "batches": [str(batch)], "focus": "helpfulness", "base": "tiny-llama",
            "settings": {"loss_type": "ipo"}}, content_type="application/json",
            HTTP_AUTHORIZATION=f"Token {token}")
        call_command("training", "policy", "--researcher", "res", "--kind", "dpo", "--batch", str(batch),
                     "--focus", "helpfulness", "--base", "tiny-llama", "--setting", "label_smoothing=0.2")
    runs = list(TrainingRun.objects.order_by("pk"))
    assert page.status_code == 302 and api.status_code == 201 and len(undispatched) == 3
    assert [(r.kind, r.focus) for r in runs] == [("dpo", "helpfulness")] * 3
    assert runs[0].config["beta"] == 0.2 and runs[0].config["strength_rule"] == "all"
    assert runs[1].config["loss_type"] == "ipo" and runs[2].config["label_smoothing"] == 0.2
    # The run page draws the held-out curves.
    TrainingRun.objects.filter(pk=runs[0].pk).update(status="running", step=2, max_steps=4)
    RunMetric.objects.create(run=runs[0], step=2, values={"eval_rewards/accuracies": 0.6, "eval_rewards/margins": 0.1,
                                                           "loss": 0.6, "learning_rate": 1e-3})
    shown = client.get(reverse("training:run", args=[runs[0].pk])).content.decode()
    assert "Held-out reward accuracy" in shown and "Held-out reward margin" in shown


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(900)
def test_a_dpo_run_from_a_batch_to_a_served_variant(celery_worker, preference_batch, researcher, tiny_base,
                                                    monkeypatch):
    batch = preference_batch(helpfulness=16, safety=4)
    run = run_launch(researcher=researcher, kind="dpo", batches=[str(batch)], base=tiny_base, focus="helpfulness",
                     name="dpo-1", settings=TINY_DPO)
    wait_for(lambda: refreshed(run).is_finished, timeout=500, message="the DPO run")
    assert run.status == "succeeded", (run.error, run.log_tail[-3000:])
    written = run.data["written"]
    assert written["train_pairs"] == written["primary_pairs"] + written["secondary_used"] > 0
    job = run.summary["job"]
    # drop_negligible: the pairs rated "negligibly better" are left out of training, and said so.
    assert job["left_out"].get("negligibly_better", 0) > 0 and job["train_pairs"] < written["train_pairs"]
    held_out = job["held_out"]
    assert held_out["pairs"] > 0 and 0 <= held_out["accuracy"] <= 1
    series = run_series(run)
    assert len(series["eval_rewards/accuracies"]) >= 2 and series["loss"]
    checkpoint = Checkpoint.objects.get(run=run)
    assert checkpoint.kind == "policy" and checkpoint.lineage["kind"] == "dpo"
    assert checkpoint.lineage["batches"] == [str(batch)] and checkpoint.name == f"dpo-1-run{run.pk}"
    generations = served_pair(checkpoint, researcher, monkeypatch, name="dpo-v1", message="Tell me about tea.")
    assert [g.status for g in generations] == ["done", "done"], [g.error for g in generations]
    assert {g.variant.name for g in generations} == {"dpo-v1"}
