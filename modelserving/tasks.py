import os
import socket

from celery import shared_task
from django.conf import settings

from . import availability, local_servers, recovery, services


@shared_task(name="modelserving.generation_sample", bind=True, max_retries=None)
def generation_sample(self, generation_id: int) -> str:
    """Sample one generation. Idempotent: see services.generation_sample.

    Transport errors are retried by the service's own count (stored on the row), so the
    Celery retry here only schedules the next try.
    """
    outcome = services.generation_sample(
        generation_id=generation_id, worker=f"{socket.gethostname()}:{os.getpid()}"
    )
    if outcome.retry_after is not None:
        raise self.retry(countdown=outcome.retry_after)
    return outcome.state


@shared_task(name="modelserving.generations_recover", ignore_result=True)
def generations_recover() -> dict:
    """Periodic (celery beat, RECOVERY["EVERY"]): send stuck generations again."""
    recovered = recovery.generations_recover()
    return {"requeued": recovered.requeued, "failed": recovered.failed}


@shared_task(name="modelserving.variants_check", ignore_result=True, expires=60)
def variants_check() -> dict:
    """Periodic (celery beat, VARIANT_HEALTH["CHECK_EVERY"]): probe the variants, take out of pairing
    those that cannot answer, bring back those that answer again."""
    return availability.variants_check()


@shared_task(name="modelserving.local_server_activate", bind=True, max_retries=None, ignore_result=True)
def local_server_activate(self, server_id: int, deadline: float) -> str:
    """Look once whether a launched local model server answers; if it is still loading, run again
    in LOCAL_SERVE_POLL seconds instead of holding the worker slot while it starts."""
    state = local_servers.local_server_activate(server_id=server_id, deadline=deadline)
    if state == "starting":
        raise self.retry(countdown=settings.LOCAL_SERVE_POLL)
    return state
