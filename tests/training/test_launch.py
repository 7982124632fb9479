"""training/launch.py: one launch path for every run kind; each kind's settings come from one owner,
its job's config dataclass, and every door (form, API, command, validator) is derived from it; and
pages that only read."""

import dataclasses

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from training import job_settings
from training.api import RewardSettingsSerializer
from training.checkpoints import DEFAULT_BASE_NAME
from training.forms import PolicyRunForm, RewardRunForm
from training.jobs.common import setting, settings_of
from training.jobs.reward import RewardJobConfig
from training.launch import run_launch
from training.models import Checkpoint, TrainingRun

from .conftest import FAST, PASSWORD

pytestmark = pytest.mark.django_db


def test_the_api_and_the_forms_offer_exactly_what_the_jobs_declare():
    reward = job_settings.settings_for(TrainingRun.Kind.REWARD_MODEL)
    assert list(reward) == list(settings_of(RewardJobConfig))
    api = RewardSettingsSerializer().fields
    form = RewardRunForm().fields
    for name, item in reward.items():
        assert name in api and name in form, name
        if item.choices:
            assert list(api[name].choices) == list(item.choices)
            assert [c for c, _ in form[name].choices] == list(item.choices)
        elif item.type is not bool:
            assert (api[name].min_value, api[name].max_value) == (item.low, item.high), name
            assert (form[name].min_value, form[name].max_value) == (item.low, item.high), name
        assert str(item.default) in api[name].help_text and str(item.default) in form[name].help_text, name
    policy = PolicyRunForm().fields
    for kind in job_settings.POLICY_KINDS:
        assert set(job_settings.settings_for(kind)) <= set(policy), kind
    # One name per setting across jobs: the length of an answer is max_new_tokens everywhere.
    names = {name for kind in job_settings.CONFIGS for name in job_settings.settings_for(kind)}
    assert "max_new_tokens" in names and "max_tokens" not in names


def test_a_setting_declared_in_a_job_reaches_every_door_with_its_bounds(monkeypatch, capsys):
    # A new setting in the job's config, and nothing else changed: the form, the validator and the
    # command take it, with the bounds and the default the config gives.
    Warm = dataclasses.make_dataclass("Warm", [("warmth", int, setting(3, "How warm.", low=1, high=9))],
                                      bases=(RewardJobConfig,))
    monkeypatch.setitem(job_settings.CONFIGS, TrainingRun.Kind.REWARD_MODEL, Warm)
    field = RewardRunForm().fields["warmth"]
    assert (field.min_value, field.max_value) == (1, 9) and "Default 3." in field.help_text
    assert job_settings.settings_validate(TrainingRun.Kind.REWARD_MODEL, {"warmth": "5"})["warmth"] == 5
    with pytest.raises(ValidationError) as refused:
        job_settings.settings_validate(TrainingRun.Kind.REWARD_MODEL, {"warmth": 10, "heat": 1})
    assert refused.value.message_dict == {"warmth": ["Must be between 1 and 9."],
                                          "heat": ["heat is not a setting of a Reward model run."]}
    call_command("training", "settings", "reward_model")
    assert "warmth = 3  (1 … 9)  How warm." in capsys.readouterr().out


def test_every_setting_is_stored_with_its_default_unless_given(researcher, preference_batch, tiny_base, undispatched):
    batch = preference_batch(helpfulness=8)
    run = run_launch(researcher=researcher, kind="reward_model", focus="helpfulness", batches=[str(batch)],
                     base=tiny_base, settings={"margin_table": "large"})
    defaults = {name: item.default for name, item in job_settings.settings_for("reward_model").items()}
    assert run.config == {**defaults, "margin_table": "large"}
    with pytest.raises(ValidationError) as refused:
        run_launch(researcher=researcher, kind="reward_model", focus="helpfulness", batches=[str(batch)],
                   base=tiny_base, settings={"margin_table": "huge", "learning_rate": "fast"})
    assert refused.value.message_dict == {"margin_table": ["Use one of none, small, large."],
                                          "learning_rate": ["Not a number: 'fast'."]}
    assert TrainingRun.objects.count() == 1


def test_an_unknown_kind_is_refused_and_nothing_is_stored(researcher, tiny_base):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        run_launch(researcher=researcher, kind="distillation", base=tiny_base)
    assert "kind" in refused.value.message_dict
    assert not TrainingRun.objects.exists()


def test_every_kind_is_queued_through_the_one_path(researcher, preference_batch, tiny_base, undispatched,
                                                   django_capture_on_commit_callbacks):
    batch = preference_batch(helpfulness=8)
    with django_capture_on_commit_callbacks(execute=True):
        reward = run_launch(researcher=researcher, kind="reward_model", focus="helpfulness", batches=[str(batch)],
                            base=tiny_base, settings=FAST)
        policy = run_launch(researcher=researcher, kind="gatt", batches=[str(batch)], base=tiny_base,
                            variant="cool", instructions=["Answer as a pirate."], settings={"epochs": 1})
    assert reward.kind == "reward_model" and policy.kind == "gatt"
    assert undispatched == [(reward.pk,), (policy.pk,)]
    assert reward.config["learning_rate"] == FAST["learning_rate"] and reward.config["margin_table"] == "small"


def test_pages_read_only_the_default_base_is_registered_by_a_launch(client, researcher, settings, tiny_model_dir,
                                                                    preference_batch, undispatched):
    # The default model folder is ready: before, a GET of the dashboard registered it as a checkpoint.
    settings.DEFAULT_MODEL_DIR = str(tiny_model_dir)
    batch = preference_batch(helpfulness=8)
    client.login(username="res", password=PASSWORD)
    for page in (reverse("training:dashboard"), reverse("training:policy_launch")):
        assert client.get(page).status_code == 200
    assert not Checkpoint.objects.exists()
    response = client.post(reverse("training:dashboard"), {
        "focus": "helpfulness", "batches": [str(batch)], "other_focus": "secondary", "base": "",
        **FAST})
    assert response.status_code == 302, response.content.decode()[:2000]
    run = TrainingRun.objects.get()
    assert run.base.name == DEFAULT_BASE_NAME
