"""What can happen to training runs and checkpoints: launch, cancel, register, fail when silent."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.roles import RESEARCHER, has_role
from annotation.models import Batch, Focus, PreferenceSource

from .data import PRIMARY, ROLES, SECONDARY, default_mix, part_sizes
from core.preference_scale import MARGIN_TABLES
from .jobs.reward import RewardJobConfig
from .models import Checkpoint, TrainingRun

logger = logging.getLogger(__name__)

DEFAULT_BASE_NAME = "smollm2-135m-instruct"
# Fields the launching task fills in: they are paths on the GPU worker, not choices.
JOB_PATH_FIELDS = ("train", "eval", "base", "out")


def weight_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.safetensors"))


def model_folder_problem(path: Path) -> str | None:
    if not (path / "config.json").is_file():
        return f"{path} has no config.json: not a Hugging Face checkpoint folder."
    if not weight_files(path):
        return f"{path} has no .safetensors weights."
    return None


def checkpoint_register(*, name: str, kind: str, path: Path | str, focus: str = "", run: TrainingRun | None = None,
                        base: Checkpoint | None = None, evaluation: dict | None = None,
                        lineage: dict | None = None) -> Checkpoint:
    path = Path(path).resolve()
    problem = model_folder_problem(path)
    if problem:
        raise ValidationError({"path": problem})
    if kind not in Checkpoint.Kind.values:
        raise ValidationError({"kind": f"Unknown kind {kind!r}; use one of {', '.join(Checkpoint.Kind.values)}."})
    if kind == Checkpoint.Kind.REWARD_MODEL and focus not in Focus.values:
        raise ValidationError({"focus": "A reward model is for helpfulness or safety."})
    if Checkpoint.objects.filter(name=name).exists():
        raise ValidationError({"name": f"A checkpoint named {name!r} exists already."})
    files = {f.name: f.stat().st_size for f in weight_files(path)}
    return Checkpoint.objects.create(name=name, kind=kind, path=str(path), focus=focus, run=run, base=base,
                                     evaluation=evaluation or {}, files=files, lineage=lineage or {})


def checkpoint_default_base() -> Checkpoint | None:
    """The converted SmolLM2 (`manage.py prepare_default_model`) as a checkpoint, once it exists."""
    existing = Checkpoint.objects.filter(name=DEFAULT_BASE_NAME).first()
    if existing or model_folder_problem(Path(settings.DEFAULT_MODEL_DIR)):
        return existing
    try:
        with transaction.atomic():
            return checkpoint_register(name=DEFAULT_BASE_NAME, kind=Checkpoint.Kind.POLICY,
                                       path=settings.DEFAULT_MODEL_DIR)
    except (IntegrityError, ValidationError):  # registered meanwhile by a concurrent request
        return Checkpoint.objects.get(name=DEFAULT_BASE_NAME)


def _require_researcher(user) -> None:
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


def reward_run_validate(*, focus, batches, sources, base, mix, margin_table, learning_rate, epochs, max_length,
                        batch_size, per_device_batch_size, seed) -> tuple[dict, dict]:
    """Check a reward-model launch; returns (job config, data) or raises ValidationError per field."""
    errors: dict[str, str] = {}
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
    known = {s.name: s for s in PreferenceSource.objects.filter(name__in=list(sources))}
    missing = sorted(set(sources) - set(known))
    if missing:
        errors["sources"] = f"No imported source named {', '.join(missing)}."
    if not batches and not sources:
        errors["batches"] = "Pick at least one frozen batch or imported source."
    if margin_table not in MARGIN_TABLES:
        errors["margin_table"] = f"Use one of {', '.join(MARGIN_TABLES)}."
    if base is None:
        errors["base"] = "No base checkpoint: run `manage.py prepare_default_model` or register one."
    elif base.kind != Checkpoint.Kind.POLICY or model_folder_problem(Path(base.path)):
        errors["base"] = f"{base} is not a usable chat checkpoint."
    learning_rate = number_in_range(errors, "learning_rate", learning_rate, 1e-8, 1e-2)
    epochs = number_in_range(errors, "epochs", epochs, 0.01, 20)
    max_length = number_in_range(errors, "max_length", max_length, 16, 32768, kind=int)
    batch_size = number_in_range(errors, "batch_size", batch_size, 1, 8192, kind=int)
    per_device_batch_size = number_in_range(errors, "per_device_batch_size", per_device_batch_size, 1, 1024,
                                            kind=int)
    seed = number_in_range(errors, "seed", seed, 0, 2**31 - 1, kind=int)
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
    per_device_batch_size = min(per_device_batch_size, batch_size)
    config = dataclasses.asdict(RewardJobConfig(
        margin_table=margin_table, learning_rate=learning_rate, epochs=epochs, max_length=max_length,
        per_device_batch_size=per_device_batch_size,
        gradient_accumulation_steps=max(1, math.ceil(batch_size / per_device_batch_size)), seed=seed))
    for field in (*JOB_PATH_FIELDS, "extra"):
        config.pop(field)
    data = {"batches": sorted(str(b) for b in chosen_batches), "sources": sorted(known), "mix": mix,
            "parts": {name: {"role": role, "available": n} for name, (role, n) in parts.items()}}
    return config, data


def run_launch(*, researcher, focus: str, batches: list[str] = (), sources: list[str] = (),
               base: Checkpoint | None = None, mix: dict | None = None, margin_table: str = "small",
               learning_rate: float = 1e-5, epochs: float = 1.0, max_length: int = 1024, batch_size: int = 512,
               per_device_batch_size: int = 8, seed: int = 0, name: str = "") -> TrainingRun:
    """Validate a reward-model run and queue it on the GPU workers (after the transaction commits)."""
    _require_researcher(researcher)
    base = base or checkpoint_default_base()
    config, data = reward_run_validate(
        focus=focus, batches=list(batches), sources=list(sources), base=base, mix=mix, margin_table=margin_table,
        learning_rate=learning_rate, epochs=epochs, max_length=max_length, batch_size=batch_size,
        per_device_batch_size=per_device_batch_size, seed=seed)
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, focus=focus, name=name[:120], config=config,
                                     data=data, base=base, launched_by=researcher)
    run_enqueue(run=run)
    return run


def run_enqueue(*, run: TrainingRun) -> None:
    """Send a queued run to the GPU workers once the transaction commits (launch, policy launch,
    relaunch). A broker that refuses the message fails the run at once, with the reason: nothing
    else would ever take it, and a run that sits queued forever tells the researcher nothing."""
    from .tasks import run_execute

    limit = settings.TRAINING_RUN_TIME_LIMIT

    def send() -> None:
        try:
            run_execute.apply_async((run.pk,), soft_time_limit=limit, time_limit=limit + 120)
        except Exception as error:  # kombu's OperationalError, a timeout, a reset, a refused connection
            logger.warning("run %s: the broker refused its message (%s: %s)", run.pk, error.__class__.__name__, error)
            TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
                status=TrainingRun.Status.FAILED, finished_at=timezone.now(),
                error=(f"Not started: the task queue did not accept the run ({error.__class__.__name__}). "
                       "Launch it again once the broker (Redis) is back."))

    transaction.on_commit(send)


def run_cancel(*, run: TrainingRun, user) -> TrainingRun:
    """A queued run is cancelled at once; a running one is asked to stop, and the task that runs
    it ends the job's process group within a heartbeat."""
    _require_researcher(user)
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if run.is_finished:
            raise ValidationError(f"{run} has already {run.status}.")
        now = timezone.now()
        if run.status == TrainingRun.Status.QUEUED:
            run.status, run.finished_at, run.error = TrainingRun.Status.CANCELLED, now, f"Cancelled by {user}."
        run.cancel_requested_at = run.cancel_requested_at or now
        run.save(update_fields=["status", "finished_at", "error", "cancel_requested_at"])
    return run


def run_relaunch(*, run: TrainingRun, researcher) -> TrainingRun:
    """A new run with the same kind, job configuration, data and base as a failed or cancelled one
    (its worker died, it was cancelled by mistake), queued like a launch. The data files are
    written afresh by the new run; the old run stays as it ended. The old run's row is locked, and
    a run whose relaunch is still queued or running is not launched again (a double click)."""
    _require_researcher(researcher)
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().select_related("base").get(pk=run.pk)
        if run.status not in (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED):
            raise ValidationError(f"Only a failed or cancelled run can be launched again; {run} is {run.status}.")
        pending = run.relaunches.exclude(status__in=TrainingRun.FINISHED).order_by("pk").first()
        if pending is not None:
            raise ValidationError(f"{run} was launched again already, as run {pending.pk} ({pending.status}); "
                                  "wait for it to end or cancel it first.")
        data = {key: value for key, value in run.data.items() if key != "written"}
        relaunched = TrainingRun.objects.create(kind=run.kind, focus=run.focus, name=run.name, config=run.config,
                                                data=data, base=run.base, launched_by=researcher, relaunch_of=run)
        run_enqueue(run=relaunched)
    return relaunched


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


def run_checkpoint_name(run: TrainingRun) -> str:
    stem = slugify(run.name) or (f"rm-{run.focus}" if run.kind == TrainingRun.Kind.REWARD_MODEL
                                 else run.kind.replace("_", "-"))
    return f"{stem}-run{run.pk}"



def run_lineage(run: TrainingRun) -> dict:
    """What a run's checkpoint comes from: its base, its data, the reward models it used."""
    reward_models = sorted(set((run.data.get("reward_models") or {}).values()))
    return {"run": run.pk, "kind": run.kind, "base": run.base.name, "batches": run.data.get("batches", []),
            "sources": run.data.get("sources", []), "reward_models": reward_models}


def vllm_command(checkpoint: Checkpoint, name: str) -> str:
    """How production serves a policy checkpoint: one vLLM server per variant, sampling settings
    from each request (Tandem sends them), never from the checkpoint's generation_config."""
    return (f"vllm serve {checkpoint.path} --served-model-name {name} --generation-config vllm "
            f"--host 0.0.0.0 --port 8000")


def checkpoint_serve(*, checkpoint: Checkpoint, researcher, name: str, temperature_min: float = 0.6,
                     temperature_max: float = 0.9, max_new_tokens: int = 256, sampling_weight: float = 1.0,
                     base_url: str = "", model_name: str = ""):
    """Put a policy checkpoint in front of annotators as a new policy variant.

    With POLICY_SERVING=local (the embedded set-up) and no URL, Tandem starts `transformers serve`
    for it on loopback, and the variant, inactive until then, joins pairing once the server answers.
    With a URL (the operator ran `vllm_command(...)`), the endpoint is filed for an admin to approve:
    endpoints are trusted configuration, and nothing samples the variant until then."""
    from modelserving.local_servers import local_server_launch, local_server_stop
    from modelserving.models import PolicyVariant
    from modelserving.services import variant_create
    from modelserving.tasks import local_server_activate

    _require_researcher(researcher)
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
