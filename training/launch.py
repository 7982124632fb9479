"""Launching a training run of any kind, the one way: check it with its kind's rules (reward
models: services.reward_run_validate; policies and evaluations: policy.policy_run_validate),
store it, and queue it on the GPU workers after the transaction commits. A relaunch queues through
the same path. The dashboard, the API and the `training` command call these."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record
from core.exceptions import Conflict

from .checkpoints import checkpoint_default_base
from .job_settings import POLICY_KINDS
from .models import Checkpoint, TrainingRun
from .policy import policy_run_validate
from .services import require_researcher, reward_run_validate
from .tasks import run_execute

logger = logging.getLogger(__name__)


def run_launch(*, researcher, kind: str, name: str = "", base: Checkpoint | None = None,
               **arguments) -> TrainingRun:
    """Check a run of ``kind`` with ``arguments`` (the keyword arguments of its kind's validator)
    and queue it; ValidationError per field, and nothing stored, when it breaks a rule."""
    require_researcher(researcher)
    if kind == TrainingRun.Kind.REWARD_MODEL:
        validate = reward_run_validate
    elif kind in POLICY_KINDS:
        validate = policy_run_validate
        arguments["kind"] = kind
    else:
        kinds = ", ".join(TrainingRun.Kind.values)
        raise ValidationError({"kind": f"Unknown run kind {kind!r}; use one of {kinds}."})
    fields = validate(base=base or checkpoint_default_base(), **arguments)
    with transaction.atomic():
        run = TrainingRun.objects.create(kind=kind, name=name[:120], launched_by=researcher, **fields)
        audit_record(actor=researcher, action="training.launch", target=run, summary=f"launched {run}", kind=kind)
        _enqueue(run)
    return run


def run_relaunch(*, run: TrainingRun, researcher) -> TrainingRun:
    """A new run with the same kind, job configuration, data and base as a failed or cancelled one
    (its worker died, it was cancelled by mistake), queued like a launch. The data files are
    written afresh by the new run; the old run stays as it ended. The old run's row is locked, and
    a run whose relaunch is still queued or running is not launched again (a double click)."""
    require_researcher(researcher)
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().select_related("base").get(pk=run.pk)
        if run.status not in (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED):
            raise Conflict(f"Only a failed or cancelled run can be launched again; {run} is {run.status}.")
        pending = run.relaunches.exclude(status__in=TrainingRun.FINISHED).order_by("pk").first()
        if pending is not None:
            raise Conflict(f"{run} was launched again already, as run {pending.pk} ({pending.status}); "
                           "wait for it to end or cancel it first.")
        data = {key: value for key, value in run.data.items() if key != "written"}
        relaunched = TrainingRun.objects.create(kind=run.kind, focus=run.focus, name=run.name, config=run.config,
                                                data=data, base=run.base, launched_by=researcher, relaunch_of=run)
        audit_record(actor=researcher, action="training.relaunch", target=relaunched,
                     summary=f"launched {run} again, as {relaunched}", relaunch_of=run.pk,
                     first_launched_by=run.launched_by_id)
        _enqueue(relaunched)
    return relaunched


def _enqueue(run: TrainingRun) -> None:
    """Send a queued run to the GPU workers once the transaction commits. A broker that refuses the
    message fails the run at once, with the reason: nothing else would ever take it, and a run
    that sits queued forever tells the researcher nothing."""
    limit = settings.TRAINING_RUN_TIME_LIMIT

    def send() -> None:
        try:
            run_execute.apply_async((run.pk,), soft_time_limit=limit, time_limit=limit + 120)
        except Exception as error:  # kombu's OperationalError, a timeout, a reset, a refused connection
            logger.warning("run %s: the broker refused its message (%s: %s)", run.pk, error.__class__.__name__,
                           error)
            TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
                status=TrainingRun.Status.FAILED, finished_at=timezone.now(),
                error=(f"Not started: the task queue did not accept the run ({error.__class__.__name__}). "
                       "Launch it again once the broker (Redis) is back."))

    transaction.on_commit(send)
