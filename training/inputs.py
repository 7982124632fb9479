"""What each kind of run gives its job: the files it writes under the run's folder (through the
export code) and the path flags of the job's command line. Called by the runner on the GPU
worker, with the database at hand; the jobs themselves never touch it."""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from annotation.batches.exports import sft_records
from annotation.models import AnswerTemplate, Batch, Dialogue, PreferenceSource
from modelserving.endpoints import endpoint_allowed
from modelserving.models import PolicyVariant

from .data import prompts_write, reward_data_write
from .models import Checkpoint, TrainingRun

# The job module of each kind.
JOBS = {
    TrainingRun.Kind.REWARD_MODEL: "training.jobs.reward",
    TrainingRun.Kind.SFT: "training.jobs.sft",
    TrainingRun.Kind.REJECTION_SAMPLING: "training.jobs.rejection_sampling",
    TrainingRun.Kind.PPO: "training.jobs.ppo",
    TrainingRun.Kind.GATT: "training.jobs.gatt",
    TrainingRun.Kind.POLICY_EVAL: "training.jobs.policy_eval",
    TrainingRun.Kind.DPO: "training.jobs.dpo",
    TrainingRun.Kind.RLOO: "training.jobs.rloo",
    TrainingRun.Kind.CONTEXT_DISTILLATION: "training.jobs.context_distillation",
}


def _batches(run: TrainingRun) -> list[Batch]:
    wanted = set(run.data.get("batches", []))
    return [b for b in Batch.objects.all() if str(b) in wanted]


def _checkpoint_path(name: str) -> str:
    return Checkpoint.objects.get(name=name).path


def _reward_models(run: TrainingRun) -> dict:
    flags = {}
    for focus in ("helpfulness", "safety"):
        name = run.data.get("reward_models", {}).get(focus)
        if name:
            flags[f"--{focus}-rm"] = _checkpoint_path(name)
    return flags


def _variant(name: str) -> PolicyVariant:
    """A variant a job may sample: approved, on an allowed host (ValueError otherwise)."""
    variant = PolicyVariant.objects.get(name=name)
    if variant.awaiting_approval:
        raise ValueError(f"Variant {name}'s endpoint waits for an admin's approval.")
    if not endpoint_allowed(variant.base_url):
        raise ValueError(f"Variant {name}'s endpoint host is not in VARIANT_ALLOWED_HOSTS.")
    return variant


def _endpoint(run: TrainingRun) -> dict:
    # The key's variable name, never the key: the job reads it from its own environment.
    variant = _variant(run.data["variant"])
    return {"--endpoint": variant.base_url, "--model": variant.model_name, "--api-key-env": variant.api_key_env}


def _answer_templates(versions: dict) -> dict[str, str]:
    """The answer templates a run recorded at launch ({risk category slug: version}), as their text."""
    found = {(t.risk_category.slug, t.version): t.text for t in AnswerTemplate.objects.filter(
        risk_category__slug__in=list(versions)).select_related("risk_category")}
    if missing := [f"{slug} v{version}" for slug, version in versions.items() if (slug, version) not in found]:
        raise ValueError(f"Answer templates no longer there: {', '.join(missing)}.")
    return {slug: found[(slug, version)] for slug, version in versions.items()}


def _write_lines(path: Path, rows) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "wb") as handle:
        for row in rows:
            handle.write(orjson.dumps(row, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE))
            count += 1
    return count


def prepare(run: TrainingRun, data_dir: Path, out: Path) -> tuple[dict, dict]:
    """(path flags of the job, counts of what was written). Raises ValueError when there is
    nothing to train on."""
    kind = run.kind
    if kind == TrainingRun.Kind.REWARD_MODEL:
        sources = list(PreferenceSource.objects.filter(name__in=run.data["sources"]))
        counts = reward_data_write(focus=run.focus, batches=_batches(run), sources=sources, mix=run.data["mix"],
                                   seed=run.config["seed"], out_dir=data_dir)
        return {"--train": data_dir / "train.jsonl", "--eval": data_dir / "eval.jsonl", "--base": run.base.path,
                "--out": out}, counts
    if kind == TrainingRun.Kind.DPO:
        # The reward model's data, mixed the same way: the pairs of the run's focus first.
        sources = list(PreferenceSource.objects.filter(name__in=run.data.get("sources", [])))
        counts = reward_data_write(focus=run.focus, batches=_batches(run), sources=sources, mix=run.data["mix"],
                                   seed=run.config["seed"], out_dir=data_dir)
        reference = run.data.get("reference")
        return {"--train": data_dir / "train.jsonl", "--eval": data_dir / "eval.jsonl", "--focus": run.focus,
                "--base": run.base.path, "--reference": _checkpoint_path(reference) if reference else run.base.path,
                "--out": out}, counts
    if kind == TrainingRun.Kind.SFT:
        n = _write_lines(data_dir / "train.jsonl", (r for b in _batches(run) for r in sft_records(b)))
        if not n:
            raise ValueError("The chosen batches hold no demonstrations.")
        return {"--train": data_dir / "train.jsonl", "--base": run.base.path, "--out": out}, {"demonstrations": n}
    if kind in (TrainingRun.Kind.REJECTION_SAMPLING, TrainingRun.Kind.PPO, TrainingRun.Kind.RLOO):
        n = prompts_write(batches=_batches(run), out=data_dir / "prompts.jsonl")
        if not n:
            raise ValueError("The chosen batches hold no prompts in their training split.")
        flags = {"--prompts": data_dir / "prompts.jsonl", **_reward_models(run), "--out": out}
        if kind == TrainingRun.Kind.PPO:
            return {**flags, "--policy": run.base.path}, {"prompts": n}
        if kind == TrainingRun.Kind.RLOO:
            return {**flags, "--base": run.base.path}, {"prompts": n}
        pools = [str(Path(r.artifacts["out"]) / "kept.jsonl")
                 for r in TrainingRun.objects.filter(pk__in=run.data.get("pool_runs", []))]
        return ({**flags, **_endpoint(run), "--base": run.base.path, "--pool": pools},
                {"prompts": n, "pooled_runs": len(pools)})
    if kind == TrainingRun.Kind.CONTEXT_DISTILLATION:
        n = prompts_write(batches=_batches(run), out=data_dir / "prompts.jsonl", adversarial=True)
        if not n:
            raise ValueError("The chosen batches hold no adversarial prompts in their training split.")
        templates = _answer_templates(run.data.get("templates", {}))
        (data_dir / "templates.json").write_text(json.dumps(templates, ensure_ascii=False, indent=2))
        return ({"--prompts": data_dir / "prompts.jsonl", "--templates": data_dir / "templates.json",
                 **_reward_models(run), **_endpoint(run), "--base": run.base.path, "--out": out},
                {"prompts": n, "templates": len(templates)})
    if kind == TrainingRun.Kind.GATT:
        (data_dir).mkdir(parents=True, exist_ok=True)
        instructions = [line for line in run.data.get("instructions", []) if line.strip()]
        (data_dir / "instructions.txt").write_text("\n".join(instructions) + "\n")
        dialogues = Dialogue.objects.filter(turns__batch__in=_batches(run)).distinct().prefetch_related("turns")
        n = _write_lines(data_dir / "dialogues.jsonl", (
            {"user_turns": [t.user_message for t in d.turns.all()]} for d in dialogues))
        if not n:
            raise ValueError("The chosen batches hold no dialogues to build Ghost Attention data from.")
        return {"--instructions": data_dir / "instructions.txt", "--dialogues": data_dir / "dialogues.jsonl",
                **_endpoint(run), "--base": run.base.path, "--out": out}, {"dialogues": n,
                                                                             "instructions": len(instructions)}
    if kind == TrainingRun.Kind.POLICY_EVAL:
        if run.data.get("prompts"):  # the researcher's own held-out prompts
            n = _write_lines(data_dir / "prompts.jsonl", ({"messages": [{"role": "user", "content": text}]}
                                                          for text in run.data["prompts"]))
        else:
            n = prompts_write(batches=_batches(run), out=data_dir / "prompts.jsonl", split="test")
        if not n:
            raise ValueError("The chosen batches hold no held-out prompts.")
        variants = [{"name": v.name, "base_url": v.base_url, "model": v.model_name, "api_key_env": v.api_key_env}
                    for v in (_variant(name) for name in sorted(run.data["variants"]))]
        return {"--prompts": data_dir / "prompts.jsonl", "--variants": json.dumps(variants), **_reward_models(run),
                "--out": out}, {"prompts": n}
    raise ValueError(f"unknown run kind {kind!r}")


def command_flags(flags: dict) -> list[str]:
    """`--flag value` pairs; a list value repeats its flag (e.g. `--pool a --pool b`)."""
    argv = []
    for flag, value in flags.items():
        for item in value if isinstance(value, list) else [value]:
            argv += [flag, str(item)]
    return argv
