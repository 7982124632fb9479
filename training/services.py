"""What can happen to training runs and checkpoints besides launching them (training/launch.py):
the reward-model launch's rules, cancel, fail when silent, serve a checkpoint to annotators."""

from __future__ import annotations

import math
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.roles import ADMIN, RESEARCHER, has_role
from annotation.models import Batch, Focus
from core.exceptions import Conflict

from .checkpoints import model_folder_problem
from .data import PRIMARY, ROLES, SECONDARY, default_mix, part_sizes, sources_named
from .job_settings import settings_validate
from .models import Checkpoint, TrainingRun


def require_researcher(user) -> None:
    if not has_role(user, RESEARCHER):
        raise PermissionDenied("Only researchers launch and cancel training runs.")


def number_in_range(errors: dict, field: str, value, low, high, *, kind=float):
    """``value`` as ``kind``; a refusal in ``errors[field]`` when it is no number or out of range."""
    try:
        value = kind(value)
    except (TypeError, ValueError):
        errors[field] = f"Not a number: {value!r}."
        return None
    if not (low <= value <= high) or (kind is float and not math.isfinite(value)):
        errors[field] = f"Must be between {low:g} and {high:g}."
    return value


def reward_run_validate(*, focus: str, batches: list[str] = (), sources: list[str] = (), base: Checkpoint | None = None,
                        mix: dict | None = None, settings: dict | None = None) -> dict:
    """Check a reward-model launch; ``settings`` are the job's (training/jobs/reward.py owns their
    defaults and bounds: training/job_settings.py). Returns the run's fields (focus, job config,
    data, base) or raises ValidationError per field."""
    errors: dict[str, str] = {}
    config = settings_validate(TrainingRun.Kind.REWARD_MODEL, settings, errors)
    if focus not in Focus.values:
        errors["focus"] = "Pick helpfulness or safety."
    found = {str(b): b for b in Batch.objects.all()}
    chosen_batches = []
    for label in batches:
        batch = found.get(label)
        if batch is None:
            errors["batches"] = f"No batch {label}."
        elif not batch.is_frozen:
            errors["batches"] = f"Batch {label} is still open: freeze it first, so its held-out split is fixed."
        else:
            chosen_batches.append(batch)
    known = sources_named(sources, errors)
    if not batches and not sources:
        errors["batches"] = "Pick at least one frozen batch or imported source."
    if base is None:
        errors["base"] = "No base checkpoint: run `manage.py prepare_default_model` or register one."
    elif base.kind != Checkpoint.Kind.POLICY or model_folder_problem(Path(base.path)):
        errors["base"] = f"{base} is not a usable chat checkpoint."
    defaults = default_mix(focus, list(known.values())) if focus in Focus.values else {}
    mix = {**defaults, **(mix or {})}
    mix["sources"] = {**defaults.get("sources", {}), **(mix.get("sources") or {})}
    share = number_in_range(errors, "primary_share", mix.get("primary_share"), 0.01, 1.0)
    if mix.get("other_focus") not in ROLES:
        errors["other_focus"] = f"Use one of {', '.join(ROLES)}."
    for name, role in (mix.get("sources") or {}).items():
        if role not in ROLES:
            errors["sources"] = f"Source {name}: use one of {', '.join(ROLES)}."
    if errors:
        raise ValidationError(errors)
    mix = {"primary_share": share, "other_focus": mix["other_focus"],
           "sources": {name: mix["sources"].get(name, SECONDARY) for name in sources}}
    parts = part_sizes(focus=focus, batches=chosen_batches, sources=list(known.values()), mix=mix)
    if not sum(n for role, n in parts.values() if role == PRIMARY):
        raise ValidationError({"batches": f"The chosen data has no {focus} pairs in its training split "
                                          "(mark a source primary or pick other batches)."})
    data = {"batches": sorted(str(b) for b in chosen_batches), "sources": sorted(known), "mix": mix,
            "parts": {name: {"role": role, "available": n} for name, (role, n) in parts.items()}}
    return {"focus": focus, "config": config, "data": data, "base": base}


def run_cancel(*, run: TrainingRun, user) -> TrainingRun:
    """A queued run is cancelled at once; a running one is asked to stop, and the task that runs
    it ends the job's process group within a heartbeat. The researcher who launched it (or launched
    it again) cancels it, or an admin; it goes into the audit trail."""
    if not (has_role(user, ADMIN) or (has_role(user, RESEARCHER) and run.launched_by_id == user.pk)):
        raise PermissionDenied("Only the researcher who launched this run, or an admin, can cancel it.")
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if run.is_finished:
            raise Conflict(f"{run} has already {run.status}.")
        now = timezone.now()
        if run.status == TrainingRun.Status.QUEUED:
            run.status, run.finished_at, run.error = TrainingRun.Status.CANCELLED, now, f"Cancelled by {user}."
        run.cancel_requested_at = run.cancel_requested_at or now
        run.save(update_fields=["status", "finished_at", "error", "cancel_requested_at"])
        audit_record(actor=user, action="training.cancel", target=run,
                     summary=f"cancelled {run} "
                             f"({'queued' if run.status == TrainingRun.Status.CANCELLED else 'running'})",
                     launched_by=run.launched_by_id)
    return run


def runs_fail_silent(*, timeout: float | None = None) -> list[int]:
    """Fail running runs whose heartbeat stopped (their worker died); returns their ids."""
    timeout = settings.TRAINING_HEARTBEAT_TIMEOUT if timeout is None else timeout
    cutoff = timezone.now() - timedelta(seconds=timeout)
    failed = []
    with transaction.atomic():
        silent = TrainingRun.objects.select_for_update(skip_locked=True).filter(
            status=TrainingRun.Status.RUNNING, heartbeat_at__lt=cutoff)
        for run in silent:
            run.status, run.finished_at = TrainingRun.Status.FAILED, timezone.now()
            run.error = (f"No heartbeat since {run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC (more than {timeout:g} s): "
                         f"the worker running it ({run.worker or 'unknown'}) stopped.")
            run.save(update_fields=["status", "finished_at", "error"])
            failed.append(run.pk)
    return failed


def vllm_command(checkpoint: Checkpoint, name: str) -> str:
    """How production serves a policy checkpoint: one vLLM server per variant, sampling settings
    from each request (Tandem sends them), never from the checkpoint's generation_config."""
    return (f"vllm serve {checkpoint.path} --served-model-name {name} --generation-config vllm "
            f"--host 0.0.0.0 --port 8000")


def serve_defaults() -> dict:
    """A served checkpoint's sampling settings when the researcher gives none: the temperatures of
    a new variant (the embedded `cool` variant's range), the variant model's own defaults for the
    rest. The page, the API and this service read them from here."""
    from modelserving.models import PolicyVariant

    fields = PolicyVariant._meta
    return {"temperature_min": 0.6, "temperature_max": 0.9,
            "max_new_tokens": fields.get_field("max_new_tokens").default,
            "sampling_weight": fields.get_field("sampling_weight").default}


def checkpoint_serve(*, checkpoint: Checkpoint, researcher, name: str, temperature_min: float | None = None,
                     temperature_max: float | None = None, max_new_tokens: int | None = None,
                     sampling_weight: float | None = None, base_url: str = "", model_name: str = ""):
    """Put a policy checkpoint in front of annotators as a new policy variant.

    With POLICY_SERVING=local (the embedded set-up) and no URL, Tandem starts `transformers serve`
    for it on loopback, and the variant, inactive until then, joins pairing once the server answers.
    With a URL (the operator ran `vllm_command(...)`), the endpoint is filed for an admin to approve:
    endpoints are trusted configuration, and nothing samples the variant until then."""
    given = {"temperature_min": temperature_min, "temperature_max": temperature_max,
             "max_new_tokens": max_new_tokens, "sampling_weight": sampling_weight}
    temperature_min, temperature_max, max_new_tokens, sampling_weight = (
        serve_defaults()[key] if value is None else value for key, value in given.items())
    from modelserving.local_servers import local_server_launch, local_server_stop
    from modelserving.models import PolicyVariant
    from modelserving.services import variant_create
    from modelserving.tasks import local_server_activate

    require_researcher(researcher)
    if checkpoint.kind != Checkpoint.Kind.POLICY:
        raise ValidationError("Only a policy checkpoint can be served to annotators.")
    if checkpoint.variant_id:
        raise ValidationError(f"{checkpoint} is served already, as variant {checkpoint.variant}.")
    server = None
    awaiting_approval = bool(base_url)
    if not base_url:
        if settings.POLICY_SERVING != "local":
            raise ValidationError({"base_url": "Start its server and give the URL, e.g. "
                                               f"`{vllm_command(checkpoint, name)}`."})
        # Everything checked before a process starts: the name, the settings, that it is free.
        PolicyVariant(name=name, base_url="http://127.0.0.1:1/v1", model_name=checkpoint.path,
                      temperature_min=temperature_min, temperature_max=temperature_max,
                      max_new_tokens=max_new_tokens, sampling_weight=sampling_weight).full_clean()
        # Started here, not waited for: the variant turns active once its server answers
        # (modelserving.local_server_activate looks, without holding a worker slot meanwhile).
        server = local_server_launch(model_dir=checkpoint.path, name=name)
        base_url, model_name = server.base_url, checkpoint.path
    try:
        with transaction.atomic():
            # Two requests at once (a double click) both passed the check above: the row lock makes
            # the second wait for the first and then see its variant.
            locked = (Checkpoint.objects.select_for_update(of=("self",)).select_related("variant")
                      .get(pk=checkpoint.pk))
            if locked.variant_id:
                raise ValidationError(f"{checkpoint} is served already, as variant {locked.variant}.")
            variant = variant_create(name=name, base_url=base_url, model_name=model_name or name,
                                     temperature_min=temperature_min, temperature_max=temperature_max,
                                     max_new_tokens=max_new_tokens, sampling_weight=sampling_weight,
                                     awaiting_approval=awaiting_approval,
                                     is_active=server is None,
                                     notes=f"From checkpoint {checkpoint} ({checkpoint.path})."
                                     + (f" Endpoint filed by {researcher} for approval." if awaiting_approval else ""))
            Checkpoint.objects.filter(pk=checkpoint.pk).update(variant=variant)
            audit_record(actor=researcher, action="training.serve", target=checkpoint,
                         summary=f"served {checkpoint} as variant {variant.name}"
                                 + (f" at {base_url} (awaiting an admin's approval)" if awaiting_approval else
                                    " on a local server"), variant=variant.pk)
            if server is not None:
                server.variant = variant
                server.save(update_fields=["variant"])
                deadline = time.time() + settings.LOCAL_SERVE_START_TIMEOUT
                local_server_activate.delay_on_commit(server.pk, deadline)
    except Exception:
        if server is not None:
            local_server_stop(server=server)
        raise
    checkpoint.variant = variant
    return variant
