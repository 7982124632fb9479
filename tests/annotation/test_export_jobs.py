"""Exports as jobs: requested over HTTP, written by the real Celery worker with its progress in the
database, downloaded once done; one job per batch and format however many ask; a job whose worker
died is sent again by the sweep; the operators' command runs the same jobs."""

import hashlib
import json
import shutil
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import user_create
from annotation.batches.export_jobs import export_dir, export_request, export_run, exports_recover
from annotation.batches.exports import batch_export
from annotation.batches.services import batch_freeze
from annotation.models import Batch, ExportJob

from ..conftest import wait_for
from ..helpers.preferences import judged_turns

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "a-long-password-9"


@pytest.fixture
def frozen(offline_variants):
    annotator = user_create(username="ann", password=PASSWORD, role="annotator")
    judged_turns(annotator, n=12)
    judged_turns(annotator, n=4, focus="safety", start=12)
    admin = user_create(username="adm", password=PASSWORD, role="admin")
    batch = batch_freeze(batch=Batch.objects.get(), admin=admin, force=True)
    yield batch, admin
    shutil.rmtree(export_dir(batch), ignore_errors=True)


def test_an_export_is_written_by_the_worker_and_downloaded_once_done(celery_worker, frozen, tmp_path):
    batch, admin = frozen
    shutil.rmtree(export_dir(batch), ignore_errors=True)
    api = APIClient()
    api.force_authenticate(admin)
    requested = api.post(f"/api/batches/{batch}/exports/", {"format": "parquet"}, format="json")
    assert requested.status_code == 202 and requested.json()["status"] == "queued"
    job = wait_for(lambda: (lambda j: j if j["status"] in ("done", "failed") else None)(
        api.get(f"/api/batches/{batch}/exports/").json()[0]), timeout=120, message="the export job to end")
    assert job["status"] == "done", job["error"]
    assert job["rows"] == job["rows_total"] == job["rows_done"] == 16 and job["percent"] == 100
    download = api.get(job["download"])
    assert download.status_code == 200
    content = b"".join(download.streaming_content)
    assert hashlib.sha256(content).hexdigest() == job["sha256"]
    # The same bytes as an export written in this process (the byte-identical guarantee holds
    # across the two paths), and the manifest lists the file.
    written = batch_export(batch=batch, admin=admin, out_dir=tmp_path, formats=("parquet",))
    assert (tmp_path / f"{batch}.full.parquet").read_bytes() == content
    manifest = json.loads((export_dir(batch) / "manifest.json").read_text())
    assert manifest["files"] == written["files"] and manifest["counts"] == written["counts"]
    stored = ExportJob.objects.get()
    assert stored.attempts == 1 and int(stored.worker.rsplit(":", 1)[1]) in celery_worker.child_pids()


def test_an_export_has_its_own_queue_and_never_waits_behind_sampling(frozen):
    # The sampling queue is backed up (a burst of pair requests, no free sampling worker): the
    # export goes to the `exports` queue, and the exporter worker writes it meanwhile.
    import redis

    from bench.processes import CeleryWorker, RedisServer
    from modelserving.tasks import generation_sample

    from ..faults.conftest import publishing_to, stack_env

    batch, admin = frozen
    shutil.rmtree(export_dir(batch), ignore_errors=True)
    broker = RedisServer().start()
    exporter = None
    try:
        exporter = CeleryWorker(stack_env(broker.url), concurrency=1, queues="exports", name="exporter").start()
        with publishing_to(broker.url):
            for generation_id in range(1_000_000, 1_000_050):
                generation_sample.delay(generation_id)
            job = export_request(batch=batch, admin=admin, fmt="csv")
        job = wait_for(lambda: (lambda j: None if j.is_active else j)(ExportJob.objects.get(pk=job.pk)),
                       timeout=120, message="the export job, with sampling backed up")
        assert job.status == "done" and job.rows == 16, job.error
        assert redis.Redis.from_url(broker.url).llen("sampling") == 50, "the sampling messages still wait"
    finally:
        if exporter is not None:
            exporter.stop()
        broker.stop()


def test_concurrent_requests_for_the_same_export_join_one_job(frozen, monkeypatch):
    batch, admin = frozen
    sent = []
    monkeypatch.setattr("annotation.tasks.export_run.apply_async_on_commit", lambda args, **kw: sent.append(args))
    start = threading.Barrier(6)
    jobs = []

    def request():
        try:
            start.wait()
            jobs.append(export_request(batch=batch, admin=admin, fmt="full").pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(jobs) == 6 and len(set(jobs)) == 1 and ExportJob.objects.count() == 1
    assert sent == [(jobs[0],)], "one message for the one job"
    assert export_run(job_id=jobs[0]).state == "done"
    assert export_run(job_id=jobs[0]).state == "skipped"  # a second delivery writes nothing
    assert export_request(batch=batch, admin=admin, fmt="full").status == "done" and len(sent) == 1


def test_an_export_whose_worker_died_is_sent_again_and_finished(frozen, monkeypatch):
    batch, admin = frozen
    sent = []
    monkeypatch.setattr("annotation.tasks.export_run.apply_async_on_commit", lambda args, **kw: sent.append(args))
    job = export_request(batch=batch, admin=admin, fmt="csv")
    # A worker claimed it and died: its lease lapsed a while ago, and the message is gone.
    ExportJob.objects.filter(pk=job.pk).update(status="running", attempts=1, lease_token="0" * 32,
                                               lease_expires_at=timezone.now() - timedelta(minutes=5))
    assert export_request(batch=batch, admin=admin, fmt="csv").status == "running"  # joined, not restarted
    assert exports_recover() == {"requeued": [job.pk], "failed": []}
    assert sent == [(job.pk,), (job.pk,)]
    assert export_run(job_id=job.pk).state == "done"
    job.refresh_from_db()
    assert job.status == "done" and job.attempts == 2 and job.recoveries == 1 and job.rows == 16


def test_an_export_only_ever_queued_is_sent_again_for_as_long_as_it_takes(frozen, monkeypatch, settings):
    # The broker was down for longer than RECOVERY_MAX_REQUEUES sweeps: the job did nothing wrong.
    batch, admin = frozen
    sent = []
    monkeypatch.setattr("annotation.tasks.export_run.apply_async_on_commit", lambda args, **kw: sent.append(args))
    job = export_request(batch=batch, admin=admin, fmt="csv")
    for _ in range(settings.RECOVERY["MAX_REQUEUES"] + 2):
        ExportJob.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timedelta(hours=1))
        assert exports_recover() == {"requeued": [job.pk], "failed": []}
    job.refresh_from_db()
    assert job.status == "queued" and job.recoveries == settings.RECOVERY["MAX_REQUEUES"] + 2


def test_an_export_whose_workers_keep_dying_ends_failed_with_the_reason(frozen, monkeypatch, settings):
    batch, admin = frozen
    monkeypatch.setattr("annotation.tasks.export_run.apply_async_on_commit", lambda args, **kw: None)
    job = export_request(batch=batch, admin=admin, fmt="csv")
    ExportJob.objects.filter(pk=job.pk).update(status="running", attempts=settings.EXPORT_MAX_ATTEMPTS,
                                               lease_token="0" * 32,
                                               lease_expires_at=timezone.now() - timedelta(minutes=5))
    assert exports_recover() == {"requeued": [], "failed": [job.pk]}
    job.refresh_from_db()
    assert job.status == "failed" and "stopped before it finished" in job.error


def test_one_export_the_sweep_cannot_send_does_not_stop_it(frozen, monkeypatch):
    batch, admin = frozen
    sent = []
    jobs = [export_request(batch=batch, admin=admin, fmt=fmt).pk for fmt in ("csv", "full")]

    def send(args, **kwargs):
        if args == (jobs[0],):
            raise RuntimeError("refused")
        sent.append(args)

    monkeypatch.setattr("annotation.tasks.export_run.apply_async_on_commit", send)
    ExportJob.objects.filter(pk__in=jobs).update(updated_at=timezone.now() - timedelta(hours=1))
    recovered = exports_recover()
    assert recovered == {"requeued": [jobs[1]], "failed": []}, (recovered, jobs, sent)
    assert sent == [(jobs[1],)]
    assert ExportJob.objects.get(pk=jobs[0]).recoveries == 0  # its savepoint rolled back alone


def test_the_command_runs_the_export_jobs_in_its_own_process(frozen, tmp_path):
    batch, admin = frozen
    out = StringIO()
    call_command("batch", "export", str(batch), "--admin", "adm", "--format", "trl", "--format", "sft", stdout=out)
    jobs = {job.format: job for job in ExportJob.objects.all()}
    assert set(jobs) == {"trl", "sft"} and all(job.status == "done" for job in jobs.values())
    assert f"{batch}.trl.jsonl: 16 rows, sha256 {jobs['trl'].sha256}" in out.getvalue()
    assert (settings.EXPORT_DIR / str(batch) / f"{batch}.trl.jsonl").is_file()
    call_command("batch", "export", str(batch), "--admin", "adm", "--format", "trl", "--out", str(tmp_path),
                 stdout=StringIO())
    assert (tmp_path / f"{batch}.trl.jsonl").read_bytes() == (export_dir(batch) / f"{batch}.trl.jsonl").read_bytes()
