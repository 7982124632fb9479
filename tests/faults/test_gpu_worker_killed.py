"""A GPU-queue worker killed with SIGKILL in the middle of a training run: the heartbeat check fails
the run, its job does not outlive it, and the run can be launched again and trains to the end."""

import os
import signal

import psutil
import pytest
from rest_framework.test import APIClient

from bench.processes import CeleryWorker
from training.launch import run_launch
from training.models import Checkpoint, RunMetric, TrainingRun
from training.services import runs_fail_silent

from ..conftest import wait_for
from ..training.conftest import FAST, preference_batch, researcher, tiny_base  # noqa: F401 — fixtures
from .conftest import publishing_to, stack_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]


def refreshed(run):
    run.refresh_from_db()
    return run


def test_a_run_whose_gpu_worker_was_killed_is_failed_by_the_heartbeat_check_and_relaunched(
        private_redis, processes, preference_batch, researcher, tiny_base):  # noqa: F811
    env = stack_env(private_redis.url, TRAINING_HEARTBEAT_SECONDS="0.5")
    gpu = processes(CeleryWorker(env, concurrency=1, queues="gpu", name="fault-gpu-worker"))
    batch = preference_batch(helpfulness=16)
    with publishing_to(private_redis.url):
        run = run_launch(researcher=researcher, kind="reward_model", focus="helpfulness", batches=[str(batch)],
                         base=tiny_base, name="killed", settings={**FAST, "epochs": 8})
    wait_for(lambda: RunMetric.objects.filter(run=run).exists(), timeout=240, message="the job to train")
    job = int(refreshed(run).worker.rsplit(" ", 1)[1])
    os.killpg(gpu.process.pid, signal.SIGKILL)  # the worker and its pool; the job has a group of its own
    gpu.process.wait(timeout=10)

    # The job writes into a pipe nobody reads any more: it ends at its next line.
    wait_for(lambda: not psutil.pid_exists(job) or psutil.Process(job).status() == psutil.STATUS_ZOMBIE,
             timeout=60, message="the orphaned job to end")
    assert refreshed(run).status == "running"  # nobody said otherwise: only the heartbeat stopped
    failed = wait_for(lambda: runs_fail_silent(timeout=3), timeout=30, message="the heartbeat check")
    assert failed == [run.pk]
    assert refreshed(run).status == "failed" and "No heartbeat since" in run.error
    assert not Checkpoint.objects.filter(run=run).exists()

    api = APIClient()
    api.force_authenticate(researcher)
    with publishing_to(private_redis.url):
        response = api.post(f"/api/training/runs/{run.pk}/relaunch/")
    assert response.status_code == 201, response.content
    again = TrainingRun.objects.get(pk=response.json()["id"])
    assert again.relaunch_of == run and again.status == "queued"
    assert (again.kind, again.focus, again.config, again.base) == (run.kind, run.focus, run.config, run.base)
    assert again.data == {key: value for key, value in run.data.items() if key != "written"}

    processes(CeleryWorker(env, concurrency=1, queues="gpu", name="fault-gpu-worker-2", purge=False))
    wait_for(lambda: refreshed(again).is_finished, timeout=300, message="the relaunched run to finish")
    assert again.status == "succeeded", (again.error, again.log_tail[-2000:])
    assert Checkpoint.objects.filter(run=again).exists()
    assert refreshed(run).status == "failed"  # the first run stays as it ended
    assert api.post(f"/api/training/runs/{again.pk}/relaunch/").status_code == 409  # only failed or cancelled
