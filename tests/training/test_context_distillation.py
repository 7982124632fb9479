"""Safety context distillation as a policy run kind: refused with the reason on every door (no
safety reward model, no adversarial prompts, no answer templates), the templates' versions kept by
the run, and a run through the real worker from a frozen batch to a served variant that samples a
pair."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from rest_framework.authtoken.models import Token

from annotation.models import AnswerTemplate, RiskCategory
from modelserving.models import PolicyVariant
from training import inputs
from training.checkpoints import checkpoint_register
from training.launch import run_launch
from training.models import Checkpoint, TrainingRun

from ..conftest import wait_for
from .conftest import PASSWORD, served_pair

TINY = {"max_new_tokens": 8, "check_max_new_tokens": 4, "learning_rate": 1e-3, "epochs": 1, "max_length": 128,
        "per_device_batch_size": 4, "gradient_checkpointing": "no"}


def seeded_rm(model_dir, out):
    """A reward model folder: the tiny model with a scalar head drawn from a fixed seed (a head drawn
    afresh at each load would make the keep rule's outcome change from run to run)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1).save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


def refreshed(run):
    run.refresh_from_db()
    return run


@pytest.fixture
def template():
    category = RiskCategory.objects.create(slug="weapons", name="Weapons")
    return AnswerTemplate.objects.create(risk_category=category, version=1, is_active=True,
                                         text="Decline the harmful part and point to lawful uses.")


def launch_everywhere(client, researcher, batch, **fields):
    """The same launch on the page, the API and the command: (page, API answer, command error)."""
    client.login(username="res", password=PASSWORD)
    form = {"kind": "context_distillation", "batches": [str(batch)], "base": fields.pop("base_pk"),
            "variant": "cool", **fields}
    page = client.post(reverse("training:policy_launch"), form)
    token = Token.objects.create(user=researcher).key if not Token.objects.filter(user=researcher).exists() \
        else Token.objects.get(user=researcher).key
    api = client.post(reverse("api-training-policy-runs"),
                      {"kind": "context_distillation", "batches": [str(batch)], "base": "tiny-llama",
                       "variant": "cool", **fields}, content_type="application/json",
                      HTTP_AUTHORIZATION=f"Token {token}")
    argv = ["training", "policy", "--researcher", "res", "--kind", "context_distillation", "--batch", str(batch),
            "--base", "tiny-llama", "--variant", "cool"]
    if fields.get("safety_rm"):
        argv += ["--safety-rm", fields["safety_rm"]]
    with pytest.raises(CommandError) as refused:
        call_command(*argv)
    return page, api, refused.value


@pytest.mark.django_db
def test_a_launch_without_a_safety_rm_adversarial_prompts_or_templates_is_refused_everywhere(
        client, preference_batch, researcher, tiny_base, tiny_model_dir, undispatched):
    checkpoint_register(name="rm-s", kind="reward_model", focus="safety", path=tiny_model_dir)
    helpful_only = preference_batch(helpfulness=4)
    # No answer templates, no adversarial prompts, no safety RM: each said.
    page, api, command = launch_everywhere(client, researcher, helpful_only, base_pk=tiny_base.pk)
    assert page.status_code == 400 and api.status_code == 400 and command.returncode == 2
    html = page.content.decode()
    assert "No answer templates" in html and "no adversarial prompts" in html and "Pick a safety reward model" in html
    assert set(api.json()) >= {"templates", "batches", "safety_rm"}
    assert "No answer templates" in str(command) and "no adversarial prompts" in str(command)
    # With a safety RM and a template, the batch without adversarial prompts is still refused.
    category = RiskCategory.objects.create(slug="weapons", name="Weapons")
    AnswerTemplate.objects.create(risk_category=category, version=1, is_active=True, text="Decline.")
    page, api, command = launch_everywhere(client, researcher, helpful_only, base_pk=tiny_base.pk, safety_rm="rm-s")
    assert page.status_code == 400 and api.status_code == 400 and command.returncode == 2
    assert set(api.json()) == {"batches"} and "no adversarial prompts" in api.json()["batches"][0]
    assert not TrainingRun.objects.exists() and undispatched == []


@pytest.mark.django_db
def test_a_helpfulness_rm_and_out_of_bounds_settings_are_refused(preference_batch, researcher, tiny_base,
                                                                 tiny_model_dir, template):
    from django.core.exceptions import ValidationError

    batch = preference_batch(helpfulness=2, safety=4)
    checkpoint_register(name="rm-s", kind="reward_model", focus="safety", path=tiny_model_dir)
    checkpoint_register(name="rm-h", kind="reward_model", focus="helpfulness", path=tiny_model_dir)
    with pytest.raises(ValidationError) as refused:
        run_launch(researcher=researcher, kind="context_distillation", batches=[str(batch)], base=tiny_base,
                   variant="cool", safety_rm="rm-s", helpfulness_rm="rm-h",
                   settings={"margin": 11, "preprompt": "x" * 1001})
    assert set(refused.value.message_dict) == {"helpfulness_rm", "margin", "preprompt"}
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_a_run_keeps_the_template_versions_it_was_launched_with(preference_batch, researcher, tiny_base,
                                                                tiny_model_dir, template, undispatched, tmp_path):
    batch = preference_batch(helpfulness=2, safety=4)
    checkpoint_register(name="rm-s", kind="reward_model", focus="safety", path=tiny_model_dir)
    run = run_launch(researcher=researcher, kind="context_distillation", batches=[str(batch)], base=tiny_base,
                     variant="cool", safety_rm="rm-s", settings={"margin": 0.25})
    assert run.data["templates"] == {"weapons": 1} and run.config["margin"] == 0.25
    # An admin writes version 2 and makes it the active one: this run still writes version 1.
    AnswerTemplate.objects.filter(pk=template.pk).update(is_active=False)
    AnswerTemplate.objects.create(risk_category=template.risk_category, version=2, is_active=True, text="v2")
    PolicyVariant.objects.filter(name="cool").update(base_url="http://127.0.0.1:9/v1")
    flags, counts = inputs.prepare(run, tmp_path / "data", tmp_path / "out")
    assert json.loads((tmp_path / "data" / "templates.json").read_text()) == {"weapons": template.text}
    prompts = [json.loads(line) for line in (tmp_path / "data" / "prompts.jsonl").read_text().splitlines()]
    assert counts == {"prompts": len(prompts), "templates": 1} and prompts
    assert all(row["is_safety"] for row in prompts), "only adversarial prompts are distilled"
    assert {"--prompts", "--templates", "--safety-rm", "--endpoint", "--base", "--out"} <= set(flags)
    assert "--helpfulness-rm" not in flags
    AnswerTemplate.objects.filter(version=1).delete()
    with pytest.raises(ValueError, match="weapons v1"):
        inputs.prepare(run, tmp_path / "data", tmp_path / "out")


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(900)
def test_a_distillation_run_from_a_batch_to_a_served_variant(celery_worker, preference_batch, researcher, tiny_base,
                                                             tiny_model_dir, template, variant_factory, model_servers,
                                                             monkeypatch, client, tmp_path):
    batch = preference_batch(helpfulness=4, safety=16)
    PolicyVariant.objects.update(is_active=False)  # the batch's variants were never reachable
    variant_factory("tiny-live", model_servers[0], max_new_tokens=8)
    rm = checkpoint_register(name="rm-s", kind="reward_model", focus="safety", path=seeded_rm(tiny_model_dir,
                                                                                              tmp_path / "rm"))
    run = run_launch(researcher=researcher, kind="context_distillation", batches=[str(batch)], base=tiny_base,
                     variant="tiny-live", safety_rm=rm.name, name="cd-1", settings=TINY)
    wait_for(lambda: refreshed(run).is_finished, timeout=600, message="the distillation run")
    assert run.status == "succeeded", (run.error, run.log_tail[-3000:])
    distillation = run.summary["job"]["distillation"]
    assert distillation["prompts_seen"] == distillation["prompts"] > 0
    assert 0 < distillation["kept_share"] <= 1 and distillation["mean_gain_kept"] > 0
    assert run.summary["job"]["false_refusal"]["prompts"] > 0
    assert run.summary["data"]["train_examples"] == distillation["kept"]
    client.login(username="res", password=PASSWORD)
    page = client.get(reverse("training:run", args=[run.pk])).content.decode()
    assert 'id="distillation"' in page and 'id="false-refusal"' in page
    checkpoint = Checkpoint.objects.get(run=run)
    assert checkpoint.lineage["kind"] == "context_distillation" and checkpoint.lineage["reward_models"] == ["rm-s"]
    generations = served_pair(checkpoint, researcher, monkeypatch, name="cd-v1", message="Tell me about rain.")
    assert [g.status for g in generations] == ["done", "done"], [g.error for g in generations]
    assert {g.variant.name for g in generations} == {"cd-v1"}


@pytest.mark.django_db
def test_a_saved_answer_template_keeps_its_words(rf, template):
    """Runs record versions, not texts: in the admin a saved version's text, category and number are
    read-only (a change is a new version)."""
    from django.contrib import admin

    from annotation.admin import AnswerTemplateAdmin

    model_admin = AnswerTemplateAdmin(AnswerTemplate, admin.site)
    assert {"text", "risk_category", "version"} <= set(model_admin.get_readonly_fields(rf.get("/"), template))
    assert "text" not in model_admin.get_readonly_fields(rf.get("/"), None)
