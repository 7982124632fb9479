"""Training tasks. A run can last hours or days: `run_execute` is acknowledged when it is received
(not late), since the run's row, its heartbeat and the periodic check track it, and a second
delivery must never start a second copy of the job. Its time limits come from the service that
enqueues it (TRAINING_RUN_TIME_LIMIT), not the short defaults of the sampling tasks."""

from celery import shared_task

from . import runner, services


@shared_task(name="training.run_execute", acks_late=False, ignore_result=True)
def run_execute(run_id: int) -> str | None:
    return runner.run_execute(run_id=run_id)


@shared_task(name="training.runs_check_heartbeats", ignore_result=True)
def runs_check_heartbeats() -> list[int]:
    return services.runs_fail_silent()
