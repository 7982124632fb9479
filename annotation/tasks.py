import os
import socket

from celery import shared_task

from .batches import export_jobs


@shared_task(name="annotation.export_run", bind=True, max_retries=None)
def export_run(self, job_id: int) -> str:
    """Write one export job's file. Idempotent: see export_jobs.export_run. Its time limits come
    from the service that sends it (EXPORT_TIME_LIMIT)."""
    outcome = export_jobs.export_run(job_id=job_id, worker=f"{socket.gethostname()}:{os.getpid()}")
    if outcome.retry_after is not None:
        raise self.retry(countdown=outcome.retry_after)
    return outcome.state


@shared_task(name="annotation.exports_recover", ignore_result=True)
def exports_recover() -> dict:
    """Periodic (celery beat, RECOVERY["EVERY"]): send stuck export jobs again."""
    return export_jobs.exports_recover()
