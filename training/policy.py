"""The rules of a policy run (SFT, rejection sampling, PPO, Ghost Attention, DPO, online RL, safety
context distillation) and of a model-based
evaluation. training/launch.py checks a launch with them and queues it like every other run; the
dashboard, the API and the command line all go through it."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError

from annotation.models import AnswerTemplate, Batch, Demonstration, Focus
from modelserving.models import PolicyVariant

from .checkpoints import tokenizer_fingerprint
from .data import PRIMARY, default_mix, part_sizes, prompt_rows, sources_named
from .job_settings import POLICY_KINDS, settings_validate
from .models import Checkpoint, TrainingRun


def _checkpoint(name: str | None, *, kind: str, field: str, errors: dict, focus: str = "") -> Checkpoint | None:
    if not name:
        return None
    checkpoint = Checkpoint.objects.filter(name=name, kind=kind).first()
    if checkpoint is None or (focus and checkpoint.focus != focus):
        errors[field] = f"No {focus + ' ' if focus else ''}{Checkpoint.Kind(kind).label.lower()} named {name!r}."
    return checkpoint


def policy_run_validate(*, kind: str, batches: list[str] = (), base: Checkpoint | None = None,
                        variant: str = "", variants: list[str] = (), helpfulness_rm: str = "", safety_rm: str = "",
                        pool_runs: list[int] = (), instructions: list[str] = (), prompts: list[str] = (),
                        focus: str = "", sources: list[str] = (), reference: str = "",
                        settings: dict | None = None) -> dict:
    """Check a policy run (or a model-based evaluation); ``settings`` are its job's (the job's config
    owns their defaults and bounds: training/job_settings.py). Returns the run's fields (job config,
    data, base) or raises ValidationError per field."""
    errors: dict[str, str] = {}
    if kind not in POLICY_KINDS:
        raise ValidationError({"kind": "Pick SFT, rejection sampling, PPO, Ghost Attention, DPO, online RL (RLOO), "
                                       "safety context distillation or an evaluation."})
    found = {str(b): b for b in Batch.objects.filter(status=Batch.Status.FROZEN)}
    chosen = [found[label] for label in batches if label in found]
    own_prompts = [line.strip() for line in prompts if line.strip()]
    if own_prompts and kind != TrainingRun.Kind.POLICY_EVAL:
        errors["prompts"] = "Only an evaluation takes its own prompts; training reads the batches."
    if missing := [label for label in batches if label not in found]:
        errors["batches"] = f"Not a frozen batch: {', '.join(missing)}."
    elif not chosen and not (own_prompts and kind == TrainingRun.Kind.POLICY_EVAL):
        errors["batches"] = "Pick at least one frozen batch."
    elif kind == TrainingRun.Kind.SFT and not Demonstration.objects.filter(batch__in=chosen).exists():
        errors["batches"] = "The chosen batches hold no demonstrations."
    config = settings_validate(kind, settings, errors)
    reward_models = {}
    for rm_focus, rm_name in (("helpfulness", helpfulness_rm), ("safety", safety_rm)):
        if _checkpoint(rm_name, kind=Checkpoint.Kind.REWARD_MODEL, field=f"{rm_focus}_rm", errors=errors,
                       focus=rm_focus):
            reward_models[rm_focus] = rm_name
    if kind in (TrainingRun.Kind.REJECTION_SAMPLING, TrainingRun.Kind.PPO, TrainingRun.Kind.RLOO,
                TrainingRun.Kind.POLICY_EVAL) \
            and not (helpfulness_rm or safety_rm):
        errors.setdefault("helpfulness_rm", "Pick a helpfulness and/or a safety reward model.")
    data = {"batches": sorted(str(b) for b in chosen), "reward_models": reward_models}
    if kind in (TrainingRun.Kind.REJECTION_SAMPLING, TrainingRun.Kind.GATT, TrainingRun.Kind.CONTEXT_DISTILLATION):
        if not PolicyVariant.objects.filter(name=variant, is_active=True).exists():
            errors["variant"] = "Pick the active policy variant to sample from."
        data["variant"] = variant
    if kind == TrainingRun.Kind.REJECTION_SAMPLING:
        pools = TrainingRun.objects.filter(pk__in=list(pool_runs), kind=kind, status=TrainingRun.Status.SUCCEEDED)
        if len(pools) != len(set(pool_runs)):
            errors["pool_runs"] = "Pool only finished rejection-sampling runs."
        data["pool_runs"] = sorted(r.pk for r in pools)
    if kind == TrainingRun.Kind.GATT:
        data["instructions"] = [line.strip() for line in instructions if line.strip()]
        if not data["instructions"]:
            errors["instructions"] = "Give at least one instruction (a hobby, a language, a public figure …)."
    if kind == TrainingRun.Kind.POLICY_EVAL:
        names = set(PolicyVariant.objects.filter(name__in=list(variants)).values_list("name", flat=True))
        if len(names) < 2 or names != set(variants):
            errors["variants"] = "Pick two or more existing policy variants."
        data["variants"] = sorted(names)
        if own_prompts:
            data["prompts"] = own_prompts
    if kind == TrainingRun.Kind.CONTEXT_DISTILLATION:
        data["templates"] = _distillation_checks(batches=chosen, helpfulness_rm=helpfulness_rm, safety_rm=safety_rm,
                                                 errors=errors)
    if base is None or base.kind != Checkpoint.Kind.POLICY:
        errors["base"] = "Pick the policy checkpoint to start from (an evaluation records it as its reference)."
    fields = {}
    if kind == TrainingRun.Kind.DPO:
        data.update(_dpo_data(focus=focus, batches=chosen, sources=sources, reference=reference, base=base,
                              errors=errors))
        fields["focus"] = focus
    elif focus or sources or reference:
        errors["focus" if focus else "sources" if sources else "reference"] = \
            "Only a DPO run takes a focus, imported sources and a reference."
    if errors:
        raise ValidationError(errors)
    return {"config": config, "data": data, "base": base, **fields}


def _dpo_data(*, focus: str, batches: list[Batch], sources: list[str], reference: str, base: Checkpoint | None,
              errors: dict) -> dict:
    """A DPO run's pairs (the batches' pairs of its focus, mixed with the other focus and imported
    sources as a reward model of that focus mixes them) and its frozen reference (the base unless
    another checkpoint with the same tokenizer is named)."""
    if focus not in Focus.values:
        errors["focus"] = "Pick helpfulness or safety: the pairs DPO learns from."
        return {}
    known = sources_named(sources, errors)
    mix = default_mix(focus, list(known.values()))
    if batches and "batches" not in errors:
        parts = part_sizes(focus=focus, batches=batches, sources=list(known.values()), mix=mix)
        if not sum(n for role, n in parts.values() if role == PRIMARY):
            errors["batches"] = (f"The chosen batches hold no {focus} pairs in their training split "
                                 f"(and no chosen source is about {focus}).")
    data = {"sources": sorted(known), "mix": mix}
    if reference:
        checkpoint = _checkpoint(reference, kind=Checkpoint.Kind.POLICY, field="reference", errors=errors)
        data["reference"] = reference
    else:
        checkpoint = base
    if base is not None and checkpoint is not None and "reference" not in errors:
        mine, theirs = tokenizer_fingerprint(Path(base.path)), tokenizer_fingerprint(Path(checkpoint.path))
        if mine is None or theirs is None:
            errors["reference" if reference else "base"] = \
                f"{checkpoint if theirs is None else base} has no tokenizer files."
        elif mine != theirs:
            errors["reference"] = (f"{checkpoint} and {base} tokenize differently: DPO compares their "
                                   "log-probabilities token by token, so the reference needs the policy's tokenizer.")
    return data


def _distillation_checks(*, batches: list[Batch], helpfulness_rm: str, safety_rm: str, errors: dict) -> dict:
    """A safety context distillation needs the safety RM (its judge), adversarial prompts in the
    batches' training split and answer templates; returns the active templates' versions by risk
    category (the run keeps them, so a relaunch writes the same templates)."""
    if not safety_rm:
        errors.setdefault("safety_rm", "Pick a safety reward model: it judges whether the preprompted answer is "
                                       "safer than the plain one.")
    if helpfulness_rm:
        errors["helpfulness_rm"] = "Context distillation keeps answers by the safety reward model alone."
    if batches and "batches" not in errors and next(prompt_rows(batches=batches, adversarial=True), None) is None:
        errors["batches"] = ("The chosen batches hold no adversarial prompts in their training split (written for "
                             "the safety focus, or tagged with a risk category or attack vector).")
    templates = dict(AnswerTemplate.objects.filter(is_active=True, risk_category__is_active=True)
                     .values_list("risk_category__slug", "version"))
    if not templates:
        errors["templates"] = ("No answer templates: an admin writes one per risk category (Admin → Answer "
                               "templates) before a distillation run.")
    return templates
