"""The launch path through a real Celery worker: the job as a subprocess, its metrics arriving in
the database while it trains, the checkpoint registered; cancel, crash and a stopped heartbeat."""

import os
from datetime import timedelta

import psutil
import pytest
from django.utils import timezone

from training.checkpoints import checkpoint_register
from training.launch import run_launch
from training.models import Checkpoint, RunMetric, TrainingRun
from training.runner import checkpoint_verify
from training.services import run_cancel
from training.tasks import runs_check_heartbeats

from ..conftest import wait_for
from .conftest import FAST

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]


def refreshed(run):
    run.refresh_from_db()
    return run


def job_pid(run) -> int:
    """The worker field reads "host:pid job <pid>" once the job has started."""
    run = wait_for(lambda: " job " in refreshed(run).worker and run, timeout=120, message="the job to start")
    return int(run.worker.rsplit(" ", 1)[1])


def test_a_reward_run_trains_in_the_worker_and_registers_its_checkpoint(celery_worker, preference_batch, researcher,
                                                                         tiny_base):
    batch = preference_batch(helpfulness=72, safety=24)
    run = run_launch(researcher=researcher, kind="reward_model", focus="helpfulness",
                     batches=[str(batch)], base=tiny_base,
                     name="polite", settings=FAST)
    assert run.status == "queued" and run.config["learning_rate"] == 3e-3 and run.config["margin_table"] == "small"
    # Metrics arrive in the database while the job still runs.
    wait_for(lambda: refreshed(run).status == "running" and RunMetric.objects.filter(run=run).exists(),
             timeout=240, interval=0.05, message="metrics of a running job")
    assert 0 < run.progress < 1 and run.heartbeat_at is not None
    wait_for(lambda: refreshed(run).is_finished, timeout=300, message="the run to finish")
    assert run.status == "succeeded", (run.error, run.log_tail[-3000:])
    metrics = list(run.metrics.all())
    assert [m.step for m in metrics if "loss" in m.values] == sorted(m.step for m in metrics if "loss" in m.values)
    assert run.step == run.max_steps == 3 * -(-run.data["written"]["train_pairs"] // 8)
    assert run.summary["data"]["truncated"] == 0 and run.summary["done"]["train_loss"] > 0
    # The mix as the paper's: all helpfulness pairs plus an equal share of the (safety) rest.
    written = run.data["written"]
    assert written["secondary_used"] == min(written["primary_pairs"], written["secondary_available"])
    checkpoint = Checkpoint.objects.get(run=run)
    assert checkpoint.kind == "reward_model" and checkpoint.focus == "helpfulness" and checkpoint.base == tiny_base
    assert checkpoint.name == f"polite-run{run.pk}" and "model.safetensors" in checkpoint.files
    evaluation = checkpoint.evaluation
    assert evaluation["pairs"] == written["eval_pairs"] == 24
    assert evaluation["accuracy"]["overall"] >= 85, evaluation["accuracy"]  # chance is 50
    assert set(evaluation["accuracy_per_strength"]) == {"significantly_better", "better", "slightly_better",
                                                        "negligibly_better"}
    assert {"focus=helpfulness", "focus=safety"} <= set(evaluation["accuracy"])
    # Table 8's layout: a row per held-out focus, a column per strength level, then the average.
    assert set(evaluation["table"]) == {"helpfulness", "safety"}
    assert evaluation["table"]["safety"]["average"] == evaluation["accuracy"]["focus=safety"]
    assert "$ " in run.log_tail and "training.jobs.reward" in run.log_tail


def test_cancel_ends_the_jobs_process_group(celery_worker, preference_batch, researcher, tiny_base):
    batch = preference_batch(helpfulness=40)
    run = run_launch(researcher=researcher, kind="reward_model", focus="helpfulness",
                     batches=[str(batch)], base=tiny_base,
                     settings={**FAST, "epochs": 20})
    pid = job_pid(run)
    wait_for(lambda: RunMetric.objects.filter(run=run).exists(), timeout=240, message="the job to train")
    assert psutil.pid_exists(pid) and os.getpgid(pid) == pid  # the job leads its own process group
    run_cancel(run=run, user=researcher)
    wait_for(lambda: refreshed(run).is_finished, timeout=60, message="the cancel to land")
    assert run.status == "cancelled" and "Cancelled" in run.error
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not Checkpoint.objects.filter(run=run).exists()
    assert run.step < run.max_steps


def test_a_queued_run_is_cancelled_at_once(preference_batch, researcher, tiny_base, monkeypatch):
    monkeypatch.setattr("training.tasks.run_execute.apply_async", lambda *args, **kwargs: None)
    run = run_launch(researcher=researcher, kind="reward_model", focus="helpfulness",
                     batches=[str(preference_batch(helpfulness=8))],
                     base=tiny_base)
    run_cancel(run=run, user=researcher)
    assert refreshed(run).status == "cancelled" and run.finished_at is not None
    with pytest.raises(Exception, match="already cancelled"):
        run_cancel(run=run, user=researcher)


def test_a_job_that_raises_leaves_a_failed_run_with_its_traceback(celery_worker, preference_batch, researcher,
                                                                 tmp_path, tiny_model_dir):
    # A base checkpoint whose weights are cut short: from_pretrained raises inside the job.
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if (tiny_model_dir / name).exists():
            (broken / name).write_bytes((tiny_model_dir / name).read_bytes())
    (broken / "model.safetensors").write_bytes((tiny_model_dir / "model.safetensors").read_bytes()[:5000])
    base = checkpoint_register(name="broken", kind="policy", path=broken)
    run = run_launch(researcher=researcher, kind="reward_model", focus="helpfulness",
                     batches=[str(preference_batch(helpfulness=8))],
                     base=base, settings=FAST)
    wait_for(lambda: refreshed(run).is_finished, timeout=240, message="the run to fail")
    assert run.status == "failed"
    assert "Traceback (most recent call last)" in run.log_tail
    assert run.error.startswith("The job exited with status 1:")
    assert not Checkpoint.objects.filter(run=run).exists()


def test_a_run_whose_heartbeat_stopped_is_failed_by_the_periodic_check(celery_worker, preference_batch, researcher,
                                                                      tiny_base, monkeypatch):
    monkeypatch.setattr("training.tasks.run_execute.apply_async", lambda *args, **kwargs: None)
    batch = preference_batch(helpfulness=8)
    silent, alive = [run_launch(researcher=researcher, kind="reward_model", focus="helpfulness",
                                batches=[str(batch)], base=tiny_base)
                     for _ in range(2)]
    # Both were claimed by a worker; one worker died 10 minutes ago, the other beats.
    TrainingRun.objects.filter(pk=silent.pk).update(status="running", worker="gpu-3:811",
                                                    heartbeat_at=timezone.now() - timedelta(minutes=10))
    TrainingRun.objects.filter(pk=alive.pk).update(status="running", heartbeat_at=timezone.now())
    runs_check_heartbeats.delay()  # as celery beat sends it, to the real worker
    wait_for(lambda: refreshed(silent).is_finished, timeout=60, message="the check to fail the silent run")
    assert silent.status == "failed" and "No heartbeat since" in silent.error and "gpu-3:811" in silent.error
    assert refreshed(alive).status == "running"


def test_a_checkpoint_is_verified_before_it_is_registered(tiny_model_dir, tmp_path):
    out = tmp_path / "rm"
    out.mkdir()
    (out / "config.json").write_bytes((tiny_model_dir / "config.json").read_bytes())
    (out / "tandem_job.json").write_text('{"metrics": {}}')
    (out / "eval.json").write_text('{"accuracy": {"overall": 50}}')
    weights = (tiny_model_dir / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(weights)
    assert checkpoint_verify(out, expect_eval=True)[2] is None
    (out / "model.safetensors").write_bytes(weights[:-10])  # a copy cut short
    assert "the header declares" in checkpoint_verify(out, expect_eval=True)[2]
    (out / "model.safetensors").write_bytes(weights)
    (out / "eval.json").write_text("{")
    assert "unreadable" in checkpoint_verify(out, expect_eval=True)[2]


def test_a_run_failed_by_the_check_while_its_job_runs_has_the_job_ended(celery_worker, preference_batch,
                                                                       researcher, tiny_base):
    """If the check fails a run whose worker was only slow (a long pause, a lost database
    connection), the worker finds the run no longer its own at its next write and ends the job
    instead of spending the GPU on a run nobody follows; the failed run is left as the check wrote it."""
    from training.services import runs_fail_silent

    batch = preference_batch(helpfulness=40)
    run = run_launch(researcher=researcher, kind="reward_model", focus="helpfulness",
                     batches=[str(batch)], base=tiny_base,
                     settings={**FAST, "epochs": 20})
    job = job_pid(run)
    wait_for(lambda: RunMetric.objects.filter(run=run).exists(), timeout=240, message="the job to train")
    # Every heartbeat counts as too old. The check skips a row the worker holds locked at that instant
    # (SKIP LOCKED, as the periodic check does, which takes it on its next pass): ask until it is taken.
    wait_for(lambda: runs_fail_silent(timeout=-60) == [run.pk], timeout=30, message="the check to fail the run")
    wait_for(lambda: not psutil.pid_exists(job) or psutil.Process(job).status() == psutil.STATUS_ZOMBIE,
             timeout=60, message="the job to be ended")
    run.refresh_from_db()
    assert run.status == "failed" and "No heartbeat since" in run.error
    assert not Checkpoint.objects.filter(run=run).exists()
