"""Exports as jobs: an admin asks for a frozen batch's file in one format, a Celery task writes it.

One job row per (batch, format), and the row's lock is the only way to start one: a second
request joins the job that is queued or running, a finished file is served again (a frozen batch
never changes), a failed one is queued afresh. The task claims the job with a lease, as sampling
claims a generation (modelserving/services.py): its progress writes renew it and are conditional
on it, so a redelivered message never runs a job twice at once, and a worker that died leaves a
lease that lapses, after which the recovery sweep sends the job again. Files are written under a
name of their own and renamed into place, then the batch's manifest is rewritten from the
finished jobs. No web request writes a file; downloads are of finished files only.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.exceptions import Conflict
from core.recovery import recover_each, stuck

from ..models import Batch, ExportJob
from .exports import _check, check_format, export_write, manifest, manifest_write, records_total

logger = logging.getLogger(__name__)

# How often a running job writes its progress (and renews its lease), at most.
PROGRESS_SECONDS = 1.0


def export_dir(batch: Batch) -> Path:
    return Path(settings.EXPORT_DIR) / str(batch)


def _file(job: ExportJob) -> Path:
    return export_dir(job.batch) / job.file_name


def _ready(job: ExportJob) -> bool:
    return job.status == ExportJob.Status.DONE and bool(job.file_name) and _file(job).is_file()


def export_request(*, batch: Batch, admin, fmt: str, enqueue: bool = True) -> ExportJob:
    """The job that exports ``batch`` as ``fmt``: the one queued or running (joined), the finished
    one, or a new one queued for the workers. ``enqueue=False`` queues it without a message (the
    caller runs it itself: the `batch export` command); if that caller dies, the sweep sends it."""
    from .. import tasks

    _check(batch, admin)
    check_format(fmt)
    with transaction.atomic():
        try:
            with transaction.atomic():
                job, created = ExportJob.objects.get_or_create(batch=batch, format=fmt,
                                                               defaults={"requested_by": admin})
        except IntegrityError:  # created by a concurrent request meanwhile
            job, created = ExportJob.objects.get(batch=batch, format=fmt), False
        job = ExportJob.objects.select_for_update().select_related("batch").get(pk=job.pk)
        if not created and (job.is_active or _ready(job)):
            return job
        if not created:  # failed, or its file went missing: once more, from the start
            job.status, job.rows_done, job.rows, job.error = ExportJob.Status.QUEUED, 0, None, ""
            job.sha256, job.size, job.attempts, job.recoveries = "", None, 0, 0
            job.finished_at, job.requested_by, job.requested_at = None, admin, timezone.now()
            job.save()
        if enqueue:
            tasks.export_run.apply_async_on_commit((job.pk,), soft_time_limit=settings.EXPORT_TIME_LIMIT,
                                                   time_limit=settings.EXPORT_TIME_LIMIT + 60)
    return job


def export_download(*, batch: Batch, admin, fmt: str) -> Path:
    """The finished file of ``fmt``; Conflict while there is none (nothing is written here)."""
    _check(batch, admin)
    check_format(fmt)
    job = ExportJob.objects.select_related("batch").filter(batch=batch, format=fmt).first()
    if job is None:
        raise Conflict(f"The {fmt} export of {batch} has not been requested yet: request it first.")
    if job.is_active:
        raise Conflict(f"The {fmt} export of {batch} is {job.status} ({job.percent} %): download it "
                       "once it is done.")
    if not _ready(job):
        raise Conflict(f"The {fmt} export of {batch} is not available"
                       + (f" (it failed: {job.error})" if job.error else " (its file is missing)")
                       + "; request it again.")
    return _file(job)


@dataclass(frozen=True)
class RunOutcome:
    state: str  # done | failed | busy | skipped | lost | missing
    retry_after: float | None = None


class _LeaseLost(Exception):
    pass


def _claim(job_id: int, worker: str) -> tuple[ExportJob | None, RunOutcome | None]:
    now = timezone.now()
    with transaction.atomic():
        job = ExportJob.objects.select_for_update().select_related("batch").filter(pk=job_id).first()
        if job is None:
            return None, RunOutcome("missing")
        if job.status in (ExportJob.Status.DONE, ExportJob.Status.FAILED):
            return None, RunOutcome("skipped")
        if job.status == ExportJob.Status.RUNNING and job.lease_expires_at and job.lease_expires_at > now:
            wait = (job.lease_expires_at - now).total_seconds()
            return None, RunOutcome("busy", retry_after=wait + random.uniform(0.1, 1.0))
        if job.attempts >= settings.EXPORT_MAX_ATTEMPTS:
            job.status, job.finished_at, job.lease_token = ExportJob.Status.FAILED, now, None
            job.error = f"Gave up after {job.attempts} tries: the worker writing it stopped before it finished."
            job.save(update_fields=["status", "finished_at", "lease_token", "error", "updated_at"])
            return None, RunOutcome("failed")
        job.status, job.attempts, job.worker, job.started_at = ExportJob.Status.RUNNING, job.attempts + 1, worker, now
        job.lease_token = uuid.uuid4()
        job.lease_expires_at = now + timedelta(seconds=settings.EXPORT_LEASE_SECONDS)
        job.rows_done, job.error = 0, ""
        job.save(update_fields=["status", "attempts", "worker", "started_at", "lease_token", "lease_expires_at",
                                "rows_done", "error", "updated_at"])
    return job, None


def export_run(*, job_id: int, worker: str = "") -> RunOutcome:
    """Write the file of one export job, or say when to look again. Safe to call any number of times."""
    job, outcome = _claim(job_id, worker)
    if outcome is not None:
        return outcome
    held = ExportJob.objects.filter(pk=job.pk, lease_token=job.lease_token, status=ExportJob.Status.RUNNING)
    lease = timedelta(seconds=settings.EXPORT_LEASE_SECONDS)
    last, read = 0.0, 0

    def progress(done: int) -> None:
        nonlocal last, read
        read = done
        if time.monotonic() - last < PROGRESS_SECONDS:
            return
        last = time.monotonic()
        now = timezone.now()
        if not held.update(rows_done=done, lease_expires_at=now + lease, updated_at=now):
            raise _LeaseLost

    try:
        held.update(rows_total=records_total(job.batch, job.format), updated_at=timezone.now())
        written = export_write(batch=job.batch, fmt=job.format, out_dir=export_dir(job.batch), progress=progress)
    except _LeaseLost:
        logger.warning("export %s: lease lost; another worker took it over", job.pk)
        return RunOutcome("lost")
    except SoftTimeLimitExceeded:
        return _fail(held, f"Stopped at the export time limit ({settings.EXPORT_TIME_LIMIT} s).")
    except Exception as error:  # an export that cannot be written ends failed, with the reason
        logger.exception("export %s failed", job.pk)
        return _fail(held, f"{error.__class__.__name__}: {error}")
    now = timezone.now()
    with transaction.atomic():
        # Every job row of the batch first, in id order, as the manifest's rewrite takes them: two
        # jobs of one batch finishing at once wait for each other instead of deadlocking.
        _lock_batch_jobs(job.batch)
        stored = held.update(status=ExportJob.Status.DONE, rows_done=read, rows=written["rows"],
                             file_name=written["name"], sha256=written["sha256"], size=written["size"],
                             lease_token=None, lease_expires_at=None, finished_at=now, updated_at=now)
        if stored:
            _manifest_refresh(job.batch)
    return RunOutcome("done" if stored else "lost")


def _fail(held, reason: str) -> RunOutcome:
    now = timezone.now()
    failed = held.update(status=ExportJob.Status.FAILED, error=reason[:2000], lease_token=None,
                         lease_expires_at=None, finished_at=now, updated_at=now)
    return RunOutcome("failed" if failed else "lost")


def _lock_batch_jobs(batch: Batch) -> list[ExportJob]:
    return list(ExportJob.objects.select_for_update().filter(batch=batch).order_by("pk"))


def _manifest_refresh(batch: Batch) -> None:
    """Rewrite the batch's manifest.json from its finished jobs. Call inside a transaction: the
    jobs' row locks make concurrent finishers write it one after the other, the last with all."""
    jobs = _lock_batch_jobs(batch)
    files = [{"name": job.file_name, "format": job.format, "rows": job.rows, "sha256": job.sha256}
             for job in sorted(jobs, key=lambda j: j.format) if job.status == ExportJob.Status.DONE]
    manifest_write(export_dir(batch), manifest(batch, files))


def exports_recover(*, queued_after: float | None = None, lapsed_after: float | None = None) -> dict:
    """Send again the export jobs whose task was lost: queued too long (the message was lost or the
    broker was down), or running with a lease that lapsed (the worker died). A job that was only ever
    queued did nothing wrong and is sent again for as long as it takes; one whose workers died
    EXPORT_MAX_ATTEMPTS times ends failed with the reason, the rule its claim applies too. Each job is
    recovered in its own savepoint: one that cannot be written or sent is logged, the others go on."""
    now = timezone.now()
    rows = stuck(ExportJob.objects.all(), now=now, queued_after=queued_after, lapsed_after=lapsed_after)
    with transaction.atomic():
        requeued, failed = recover_each(rows.select_for_update(skip_locked=True).order_by("pk"),
                                        lambda job: _recover_one(job, now=now), what="export job", logger=logger)
    return {"requeued": requeued, "failed": failed}


def _recover_one(job: ExportJob, *, now) -> str:
    """Call inside a savepoint holding the row lock. Returns "requeued" or "failed"."""
    from .. import tasks

    lapsed = job.status == ExportJob.Status.RUNNING
    job.lease_token, job.lease_expires_at = None, None
    if lapsed and job.attempts >= settings.EXPORT_MAX_ATTEMPTS:
        job.status, job.finished_at = ExportJob.Status.FAILED, now
        job.error = (f"Gave up after {job.attempts} tries: the worker writing it stopped before it finished "
                     "each time.")
        outcome = "failed"
    else:
        job.status, job.recoveries = ExportJob.Status.QUEUED, job.recoveries + 1
        tasks.export_run.apply_async_on_commit((job.pk,), soft_time_limit=settings.EXPORT_TIME_LIMIT,
                                               time_limit=settings.EXPORT_TIME_LIMIT + 60)
        outcome = "requeued"
    job.save(update_fields=["status", "finished_at", "error", "recoveries", "lease_token", "lease_expires_at",
                            "updated_at"])
    return outcome
