"""The runner while it writes a run's data (which takes long for a large batch): the heartbeat keeps
beating, and a run failed by the heartbeat check or cancelled meanwhile is never started.

The runner is the body of the `training.run_execute` task; it runs here in the test process, so that
its data preparation can be made slow and the check can strike in the middle of it."""

import time

import pytest

from training import runner
from training.launch import run_launch
from training.models import RunMetric, TrainingRun
from training.services import run_cancel, runs_fail_silent

from .conftest import FAST

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def queued_run(preference_batch, researcher, tiny_base, monkeypatch):
    monkeypatch.setattr("training.tasks.run_execute.apply_async", lambda *args, **kwargs: None)
    batch = preference_batch(helpfulness=8)
    return run_launch(researcher=researcher, kind="reward_model", focus="helpfulness",
                      batches=[str(batch)], base=tiny_base, settings=FAST)


@pytest.fixture
def no_job(monkeypatch):
    """Fails the test if the runner starts a job process."""
    def popen(*args, **kwargs):
        raise AssertionError("the job was started")

    monkeypatch.setattr("training.runner.subprocess.Popen", popen)


def slow(monkeypatch, during):
    """The data preparation takes a while, and ``during(run)`` happens in the middle of it."""
    real = runner.prepare

    def prepare(run, data_dir, out):
        during(run)
        return real(run, data_dir, out)

    monkeypatch.setattr("training.runner.prepare", prepare)


def test_the_heartbeat_beats_while_the_data_is_written(queued_run, settings, monkeypatch, no_job):
    seen = {}

    def during(run):
        claimed = TrainingRun.objects.get(pk=run.pk).heartbeat_at
        time.sleep(6 * settings.TRAINING_HEARTBEAT_SECONDS)
        seen["beat"] = TrainingRun.objects.get(pk=run.pk).heartbeat_at > claimed
        # The periodic check with a timeout of two beats finds nothing silent.
        seen["failed"] = runs_fail_silent(timeout=2 * settings.TRAINING_HEARTBEAT_SECONDS)
        raise ValueError("enough")

    slow(monkeypatch, during)
    assert runner.run_execute(run_id=queued_run.pk) == "failed"
    assert seen == {"beat": True, "failed": []}
    queued_run.refresh_from_db()
    assert queued_run.error == "Writing the training data failed: enough"


def test_the_heartbeat_survives_a_database_hiccup(queued_run, settings, monkeypatch, no_job, caplog):
    # The runs table is unreachable for two beats (as in a database restart): those beats fail and
    # are logged, and the heartbeat goes on once the table is back.
    from django.db import connection

    beat = settings.TRAINING_HEARTBEAT_SECONDS
    seen = {}

    def during(run):
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE training_trainingrun RENAME TO training_trainingrun_away")
            time.sleep(2.5 * beat)
            cursor.execute("ALTER TABLE training_trainingrun_away RENAME TO training_trainingrun")
        back = TrainingRun.objects.get(pk=run.pk).heartbeat_at
        time.sleep(3 * beat)
        seen["beat after"] = TrainingRun.objects.get(pk=run.pk).heartbeat_at > back
        raise ValueError("enough")

    slow(monkeypatch, during)
    assert runner.run_execute(run_id=queued_run.pk) == "failed"
    assert seen == {"beat after": True}
    assert f"run {queued_run.pk}: a heartbeat could not be written; trying again" in caplog.text


def test_a_run_failed_by_the_heartbeat_check_while_its_data_is_written_is_not_started(queued_run, monkeypatch,
                                                                                     no_job):
    slow(monkeypatch, lambda run: runs_fail_silent(timeout=-60))  # a check that struck during the preparation
    assert runner.run_execute(run_id=queued_run.pk) is None
    queued_run.refresh_from_db()
    assert queued_run.status == "failed" and "No heartbeat since" in queued_run.error
    assert " job " not in queued_run.worker and not queued_run.log_tail
    assert not RunMetric.objects.filter(run=queued_run).exists()


def test_a_run_cancelled_while_its_data_is_written_ends_cancelled_without_its_job(queued_run, researcher,
                                                                                 monkeypatch, no_job):
    slow(monkeypatch, lambda run: run_cancel(run=run, user=researcher))
    assert runner.run_execute(run_id=queued_run.pk) == "cancelled"
    queued_run.refresh_from_db()
    assert queued_run.status == "cancelled" and "before the job started" in queued_run.error
    assert queued_run.finished_at is not None and " job " not in queued_run.worker
