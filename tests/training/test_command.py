"""`manage.py training`: the dashboard's operations from the command line."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from training.models import Checkpoint, TrainingRun

from .conftest import FAST

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command("training", *args, stdout=out)
    return out.getvalue()


def test_launch_list_show_cancel_and_register(preference_batch, researcher, tiny_base, tiny_model_dir, monkeypatch,
                                              django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("training.tasks.run_execute.apply_async", lambda args, **kwargs: sent.append(args))
    batch = preference_batch(helpfulness=8)
    with pytest.raises(CommandError, match="learning_rate: Must be between"):
        run("launch", "--researcher", "res", "--focus", "helpfulness", "--batch", str(batch), "--base", "tiny-llama",
            "--setting", "learning_rate=3")
    assert not TrainingRun.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        out = run("launch", "--researcher", "res", "--focus", "helpfulness", "--batch", str(batch),
                  "--base", "tiny-llama", "--setting", "margin_table=large", "--primary-share", "0.8",
                  *[item for key, value in FAST.items() for item in ("--setting", f"{key}={value}")])
    run_row = TrainingRun.objects.get()
    assert f"run {run_row.pk} queued" in out and sent == [(run_row.pk,)]
    assert run_row.config["margin_table"] == "large" and run_row.data["mix"]["primary_share"] == 0.8
    assert f"{run_row.pk}  queued" in run("list")
    assert json.loads(run("show", str(run_row.pk)))["config"]["learning_rate"] == 3e-3
    assert "cancelled" in run("cancel", str(run_row.pk), "--researcher", "res")
    with pytest.raises(CommandError, match="already cancelled"):
        run("cancel", str(run_row.pk), "--researcher", "res")
    assert "registered" in run("register", str(tiny_model_dir), "--name", "rm-import", "--kind", "reward_model",
                               "--focus", "safety")
    assert Checkpoint.objects.get(name="rm-import").focus == "safety"
    with pytest.raises(CommandError, match="no config.json"):
        run("register", "/tmp", "--name", "nothing-there")
    assert "rm-import" in run("checkpoints")
    assert "failed 0 silent run(s)" in run("check-heartbeats")


def test_policy_runs_from_the_command_line(preference_batch, researcher, tiny_base, monkeypatch,
                                           django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("training.tasks.run_execute.apply_async", lambda args, **kwargs: sent.append(args))
    batch = preference_batch(helpfulness=4)
    with pytest.raises(CommandError, match="instructions"):
        run("policy", "--researcher", "res", "--kind", "gatt", "--batch", str(batch), "--base", "tiny-llama",
            "--variant", "cool")
    with pytest.raises(CommandError, match="KEY=VALUE"):
        run("policy", "--researcher", "res", "--kind", "gatt", "--batch", str(batch), "--setting", "oops")
    with django_capture_on_commit_callbacks(execute=True):
        out = run("policy", "--researcher", "res", "--kind", "gatt", "--batch", str(batch), "--base", "tiny-llama",
                  "--variant", "cool", "--instruction", "Answer in French.", "--instruction", "Speak like a pirate.",
                  "--setting", "temperature=0.9")
    created = TrainingRun.objects.get()
    assert "Ghost Attention" in out and sent == [(created.pk,)]
    assert created.data["instructions"] == ["Answer in French.", "Speak like a pirate."]
    assert created.config["temperature"] == 0.9 and created.config["max_new_tokens"] == 512  # the job's default
