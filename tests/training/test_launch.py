"""training/launch.py: one launch path for every run kind, the reward job's defaults read from one
place, and pages that only read."""

import dataclasses

import pytest
from django.core.management.base import CommandParser
from django.urls import reverse

from training.api import LaunchSerializer
from training.checkpoints import DEFAULT_BASE_NAME
from training.forms import RewardRunForm
from training.jobs.reward import REWARD_DEFAULTS, RewardJobConfig
from training.launch import run_launch
from training.management.commands.training import Command as TrainingCommand
from training.models import Checkpoint, TrainingRun

from .conftest import FAST, PASSWORD

pytestmark = pytest.mark.django_db

REWARD_FIELDS = ("margin_table", "learning_rate", "epochs", "max_length", "batch_size", "per_device_batch_size", "seed")


def test_the_reward_job_s_defaults_are_what_every_door_offers(monkeypatch):
    # Change the job's defaults: the form, the serializer and the command must follow (they read them).
    changed = RewardJobConfig(margin_table="large", learning_rate=2e-5, epochs=2.0, max_length=512,
                              per_device_batch_size=4, gradient_accumulation_steps=16, seed=7)
    assert changed.batch_size == 64 and REWARD_DEFAULTS.batch_size == 512
    form = RewardRunForm()
    serializer = LaunchSerializer()
    parser = CommandParser()
    TrainingCommand().add_arguments(parser)
    launch = parser.parse_args(["launch", "--researcher", "r", "--focus", "helpfulness"])
    for field in REWARD_FIELDS:
        default = getattr(REWARD_DEFAULTS, field)
        assert form.fields[field].initial == default, field
        assert serializer.fields[field].default == default, field
        assert getattr(launch, field) == default, field
    assert dataclasses.asdict(changed) != dataclasses.asdict(REWARD_DEFAULTS)


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
                            base=tiny_base, **FAST)
        policy = run_launch(researcher=researcher, kind="gatt", batches=[str(batch)], base=tiny_base,
                            variant="cool", instructions=["Answer as a pirate."], job_settings={"epochs": 1})
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
        **{field: getattr(REWARD_DEFAULTS, field) for field in REWARD_FIELDS}, **FAST})
    assert response.status_code == 302, response.content.decode()[:2000]
    run = TrainingRun.objects.get()
    assert run.base.name == DEFAULT_BASE_NAME
