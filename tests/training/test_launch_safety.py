"""Launching, relaunching and serving when things go wrong: a broker that refuses the run's message,
a double click on "Launch again" or on "Serve"."""

import pytest
from django.core.exceptions import ValidationError

from bench.processes import free_port
from modelserving.models import PolicyVariant
from training.checkpoints import checkpoint_register
from training.launch import run_launch, run_relaunch
from training.models import Checkpoint, TrainingRun
from training.services import checkpoint_serve

from ..faults.conftest import publishing_to
from .conftest import FAST

pytestmark = pytest.mark.django_db


def test_a_run_the_broker_refuses_ends_failed_with_the_reason(preference_batch, researcher, tiny_base,
                                                              django_capture_on_commit_callbacks):
    # Redis is down when the researcher presses Launch: the run must not sit queued forever.
    batch = preference_batch(helpfulness=4)
    with publishing_to(f"redis://127.0.0.1:{free_port()}/0"):
        with django_capture_on_commit_callbacks(execute=True):
            reward = run_launch(researcher=researcher, kind="reward_model", focus="helpfulness",
                                batches=[str(batch)], base=tiny_base, settings=FAST)
        with django_capture_on_commit_callbacks(execute=True):
            policy = run_launch(researcher=researcher, kind="gatt", batches=[str(batch)], base=tiny_base,
                                variant="cool", instructions=["Answer as a pirate."])
        with django_capture_on_commit_callbacks(execute=True):
            again = run_relaunch(run=reward, researcher=researcher)  # the failed launch, launched again
    for run in (reward, policy, again):
        run.refresh_from_db()
        assert run.status == "failed" and run.finished_at is not None, run
        assert run.error.startswith("Not started: the task queue did not accept the run ("), run.error
        assert "Launch it again once the broker" in run.error


def test_a_run_the_broker_takes_stays_queued(preference_batch, researcher, tiny_base, undispatched,
                                            django_capture_on_commit_callbacks):
    batch = preference_batch(helpfulness=4)
    with django_capture_on_commit_callbacks(execute=True):
        run = run_launch(researcher=researcher, kind="reward_model", focus="helpfulness", batches=[str(batch)],
                         base=tiny_base, settings=FAST)
    run.refresh_from_db()
    assert run.status == "queued" and undispatched == [(run.pk,)]


def test_a_second_relaunch_of_the_same_run_is_refused(preference_batch, researcher, tiny_base, undispatched):
    # A double click: both requests loaded the failed run before either launched it again.
    batch = preference_batch(helpfulness=4)
    run = run_launch(researcher=researcher, kind="reward_model", focus="helpfulness", batches=[str(batch)],
                     base=tiny_base, settings=FAST)
    TrainingRun.objects.filter(pk=run.pk).update(status="failed", error="No heartbeat")
    first_click, second_click = TrainingRun.objects.get(pk=run.pk), TrainingRun.objects.get(pk=run.pk)
    relaunched = run_relaunch(run=first_click, researcher=researcher)
    with pytest.raises(ValidationError, match=f"was launched again already, as run {relaunched.pk} \\(queued\\)"):
        run_relaunch(run=second_click, researcher=researcher)
    assert TrainingRun.objects.filter(relaunch_of=run).count() == 1
    # Once that relaunch has ended too, the run may be launched again.
    TrainingRun.objects.filter(pk=relaunched.pk).update(status="failed")
    assert run_relaunch(run=second_click, researcher=researcher).relaunch_of_id == run.pk


def test_a_checkpoint_served_twice_at_once_makes_one_variant(tiny_model_dir, researcher, settings):
    # A double click on Serve: both requests loaded the checkpoint before either made its variant.
    settings.POLICY_SERVING = "external"
    settings.VARIANT_ALLOWED_HOSTS = [*settings.VARIANT_ALLOWED_HOSTS, "vllm-rlhf-v2"]
    checkpoint_register(name="tiny-policy", kind=Checkpoint.Kind.POLICY, path=tiny_model_dir)
    first_click, second_click = (Checkpoint.objects.get(name="tiny-policy") for _ in range(2))
    variant = checkpoint_serve(checkpoint=first_click, researcher=researcher, name="rlhf-v2",
                               base_url="http://vllm-rlhf-v2:8000/v1", model_name="rlhf-v2")
    with pytest.raises(ValidationError, match="served already, as variant rlhf-v2"):
        checkpoint_serve(checkpoint=second_click, researcher=researcher, name="rlhf-v2-again",
                         base_url="http://vllm-rlhf-v2:8000/v1", model_name="rlhf-v2")
    assert list(PolicyVariant.objects.values_list("name", flat=True)) == [variant.name]
    assert Checkpoint.objects.get(name="tiny-policy").variant_id == variant.pk
