"""Checkpoints as rows: a model folder's check, registration, the default base, a run's lineage.
The runner and the services read these; nothing here launches or queues anything."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from annotation.models import Focus

from .models import Checkpoint, TrainingRun

DEFAULT_BASE_NAME = "smollm2-135m-instruct"


def weight_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.safetensors"))


def model_folder_problem(path: Path) -> str | None:
    if not (path / "config.json").is_file():
        return f"{path} has no config.json: not a Hugging Face checkpoint folder."
    if not weight_files(path):
        return f"{path} has no .safetensors weights."
    return None


# What decides which ids a text becomes: two checkpoints that agree on these tokenize alike.
_TOKENIZER_PARTS = ("model", "added_tokens", "normalizer", "pre_tokenizer")
_TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.model", "vocab.txt")


def tokenizer_fingerprint(path: Path | str) -> str | None:
    """A digest of a checkpoint's tokenizer (its vocabulary, merges, added tokens and the rules
    that split text before them), read from its files without loading it; None when the folder
    has no tokenizer."""
    path = Path(path)
    digest = hashlib.sha256()
    try:
        if (path / "tokenizer.json").is_file():
            tokenizer = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
            digest.update(json.dumps({part: tokenizer.get(part) for part in _TOKENIZER_PARTS},
                                     sort_keys=True).encode())
            return digest.hexdigest()
        found = [name for name in _TOKENIZER_FILES if (path / name).is_file()]
        for name in found:
            digest.update(name.encode() + b"\0" + (path / name).read_bytes())
    except (OSError, ValueError):
        return None
    return digest.hexdigest() if found else None


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


def run_checkpoint_name(run: TrainingRun) -> str:
    stem = slugify(run.name) or (f"rm-{run.focus}" if run.kind == TrainingRun.Kind.REWARD_MODEL
                                 else run.kind.replace("_", "-"))
    return f"{stem}-run{run.pk}"



def run_lineage(run: TrainingRun) -> dict:
    """What a run's checkpoint comes from: its base, its data, the reward models it used."""
    reward_models = sorted(set((run.data.get("reward_models") or {}).values()))
    return {"run": run.pk, "kind": run.kind, "base": run.base.name, "batches": run.data.get("batches", []),
            "sources": run.data.get("sources", []), "reward_models": reward_models}
