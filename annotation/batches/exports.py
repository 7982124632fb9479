"""Exports of a frozen batch, streamed from the database with constant memory.

`full` JSONL: one record per judged turn with what it takes to reproduce it. `trl`: the
conversational preference format (`prompt`, `chosen`, `rejected`, `margin`) that
`datasets.load_dataset("json", ...)` loads and TRL's RewardTrainer trains on unchanged.
`parquet`: the full records (pyarrow). `csv`: flattened for spreadsheets, formulas neutralised.
Records are written in turn-id order with sorted keys, so exporting a frozen batch twice gives
byte-identical files; a manifest lists counts and each file's sha256.

Records read only rows the database keeps frozen (the turns, their generations, the batch) and the
snapshot the freeze took of everything else (variant names, vendor, guideline version, tags), so a
renamed variant or vendor never changes a re-export. The web tier never writes an export: admins
request one and a Celery task writes it (annotation/batches/export_jobs.py); `batch_export` writes them in
the caller's process (the `batch export --out` command, training data).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import orjson
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count

from accounts.roles import ADMIN, has_role
from core.exceptions import Conflict
from core.preference_scale import DEFAULT_MARGIN_TABLE, margin_for
from modelserving.models import Generation

from ..models import Batch, Demonstration, Turn
from .export_formats import write_csv, write_parquet

SCHEMA_VERSION = 1
FORMATS = ("full", "trl", "parquet", "csv", "sft")
LINE_FORMATS = ("full", "trl")
EXTENSIONS = {"full": "full.jsonl", "trl": "trl.jsonl", "parquet": "full.parquet", "csv": "csv", "sft": "sft.jsonl"}
CHUNK = 2000
# An export reports its progress every this many records.
PROGRESS_EVERY = 500


def pseudonym(user_id: int) -> str:
    """A stable pseudonymous annotator id: HMAC-SHA256 of the user id under a secret key."""
    return _pseudonym_cached(user_id, settings.ANNOTATOR_PSEUDONYM_KEY or "annotator-pseudonym:" + settings.SECRET_KEY)


def _iso(moment) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


# Columns of frozen rows only: what other tables would add comes from the freeze's snapshot.
TURN_FIELDS = (
    "id", "dialogue_id", "index", "split", "strength", "chosen_safe", "other_safe", "safety_bin", "both_unusable",
    "unusable_reason", "time_spent_ms", "created_at", "submitted_at", "pair_id", "left_generation_id",
    "chosen_generation_id", "snapshot",
)
GENERATION_FIELDS = (
    "id", "pair_id", "position", "messages", "text", "variant_id", "model_name", "temperature", "top_p", "seed",
    "max_tokens", "prompt_tokens", "completion_tokens", "latency_ms", "finish_reason",
)


def _chunks(batch: Batch) -> Iterator[tuple[list[dict], dict[int, list[dict]]]]:
    """The batch's judged turns in id order, CHUNK at a time (keyset pagination: constant memory
    however large the batch), each chunk with the generations of its pairs. Plain rows, no model
    instances: this path is what a million-row export spends its time in."""
    judged = Turn.objects.filter(batch=batch, submitted_at__isnull=False).order_by("pk")
    after = 0
    while True:
        turns = list(judged.filter(pk__gt=after).values(*TURN_FIELDS)[:CHUNK])
        if not turns:
            return
        generations: dict[int, list[dict]] = {}
        rows = Generation.objects.filter(pair_id__in=[t["pair_id"] for t in turns]).order_by("pair_id", "position")
        for row in rows.values(*GENERATION_FIELDS):
            generations.setdefault(row["pair_id"], []).append(row)
        yield turns, generations
        after = turns[-1]["id"]


def _response(generation: dict, side: str, variants: dict) -> dict:
    return {
        "text": generation["text"], "variant": variants[str(generation["variant_id"])]["name"],
        "model": generation["model_name"],
        "temperature": generation["temperature"], "top_p": generation["top_p"], "seed": generation["seed"],
        "max_tokens": generation["max_tokens"], "prompt_tokens": generation["prompt_tokens"],
        "completion_tokens": generation["completion_tokens"], "latency_ms": generation["latency_ms"],
        "finish_reason": generation["finish_reason"], "side": side,
    }


@lru_cache(maxsize=100_000)
def _pseudonym_cached(user_id: int, key: str) -> str:
    return "a_" + hmac.new(key.encode(), str(user_id).encode(), hashlib.sha256).hexdigest()[:20]


def full_record(turn: dict, generations: list[dict], *, batch_label: str, variants: dict) -> dict:
    """One judged turn as exported; ``variants`` is the batch's snapshot of its policy variants."""
    sides = {g["id"]: ("A" if g["id"] == turn["left_generation_id"] else "B") for g in generations}
    chosen = next((g for g in generations if g["id"] == turn["chosen_generation_id"]), None)
    rejected = next((g for g in generations if chosen is not None and g["id"] != chosen["id"]), None)
    strength = turn["strength"]
    frozen = turn["snapshot"]
    return {
        "schema_version": SCHEMA_VERSION,
        "batch": batch_label,
        "split": turn["split"],
        "turn_id": turn["id"],
        "dialogue_id": turn["dialogue_id"],
        "turn_index": turn["index"],
        "focus": frozen["focus"],
        "context": generations[0]["messages"],  # exactly as sent to both variants
        "chosen": _response(chosen, sides[chosen["id"]], variants) if chosen else None,
        "rejected": _response(rejected, sides[rejected["id"]], variants) if rejected else None,
        "responses_unusable": None if chosen else [_response(g, sides[g["id"]], variants) for g in generations],
        "strength": strength or None,
        "margin_small": margin_for(strength, "small") if strength else None,
        "margin_large": margin_for(strength, "large") if strength else None,
        "chosen_safe": turn["chosen_safe"],
        "rejected_safe": turn["other_safe"],
        "safety_bin": turn["safety_bin"] or None,
        "risk_category": frozen["risk_category"],
        "attack_vector": frozen["attack_vector"],
        "both_unusable": turn["both_unusable"],
        "unusable_reason": turn["unusable_reason"] or None,
        "annotator": pseudonym(frozen["annotator"]),
        "vendor": frozen["vendor"],
        "guideline_version": frozen["guideline_version"],
        "time_spent_ms": turn["time_spent_ms"],
        "turn_created_at": _iso(turn["created_at"]),
        "submitted_at": _iso(turn["submitted_at"]),
    }


def trl_record(record: dict, *, margin_table: str | None = DEFAULT_MARGIN_TABLE) -> dict | None:
    """TRL's conversational preference example under a margin table; None for a pair without a winner.
    ``margin_table=None``: no margin, only the strength (the reward job applies its own table)."""
    if record["chosen"] is None:
        return None
    return {
        "prompt": record["context"],
        "chosen": [{"role": "assistant", "content": record["chosen"]["text"]}],
        "rejected": [{"role": "assistant", "content": record["rejected"]["text"]}],
        "margin": margin_for(record["strength"], margin_table) if margin_table else None,
        "focus": record["focus"],
        "strength": record["strength"],
        "split": record["split"],
        "turn_id": record["turn_id"],
    }


def _frozen(batch: Batch) -> None:
    if not batch.is_frozen:
        raise Conflict(f"Batch {batch} is not frozen yet: freeze it first, so the export cannot change.")


def records(batch: Batch) -> Iterator[dict]:
    """The full records of a frozen batch's judged turns, in turn-id order."""
    _frozen(batch)
    label, variants = str(batch), batch.snapshot["variants"]
    for turns, generations in _chunks(batch):
        for turn in turns:
            yield full_record(turn, generations[turn["pair_id"]], batch_label=label, variants=variants)


def sft_records(batch: Batch) -> Iterator[dict]:
    """The batch's demonstrations as SFT conversations: the context, then the ideal answer."""
    rows = Demonstration.objects.filter(batch=batch).order_by("pk").values(
        "pk", "kind", "context", "answer", "turn_id", "annotator_id", "created_at")
    for row in rows.iterator(chunk_size=CHUNK):
        yield {"messages": [*row["context"], {"role": "assistant", "content": row["answer"]}],
               "demonstration_id": row["pk"], "kind": row["kind"], "turn_id": row["turn_id"],
               "annotator": pseudonym(row["annotator_id"]), "created_at": _iso(row["created_at"]),
               "batch": str(batch)}


def _encoded_lines(batch: Batch, fmt: str) -> Iterator[bytes]:
    if fmt not in LINE_FORMATS:
        raise ValidationError(f"{fmt!r} is not a line format; use one of {', '.join(LINE_FORMATS)}.")
    for record in records(batch):
        row = record if fmt == "full" else trl_record(record)
        # None still counts as a record read (the progress of a trl export), never as a line.
        yield None if row is None else orjson.dumps(row, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)


def _check(batch: Batch, admin) -> None:
    if not has_role(admin, ADMIN):
        raise PermissionDenied("Only admins export batches.")
    _frozen(batch)


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValidationError(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_name(batch: Batch, fmt: str) -> str:
    return f"{batch}.{EXTENSIONS[fmt]}"


def records_total(batch: Batch, fmt: str) -> int:
    """How many records an export of ``fmt`` reads (the progress bar's end)."""
    if fmt == "sft":
        return Demonstration.objects.filter(batch=batch).count()
    return Turn.objects.filter(batch=batch, submitted_at__isnull=False).count()


def _counted(items: Iterable, progress: Callable[[int], None] | None) -> Iterator:
    """``items``, calling ``progress(records read so far)`` now and then (and at the end)."""
    done = 0
    for item in items:
        yield item
        done += 1
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(done)
    if progress is not None:
        progress(done)


def export_write(*, batch: Batch, fmt: str, out_dir: Path, progress: Callable[[int], None] | None = None) -> dict:
    """Write one format's file of a frozen batch into ``out_dir``: first under a name of its own,
    then renamed into place, so a reader never sees half a file and two writers never mix their
    bytes. Returns its manifest entry (name, format, rows, sha256, size)."""
    _frozen(batch)
    check_format(fmt)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / file_name(batch, fmt)
    partial = path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        if fmt in LINE_FORMATS or fmt == "sft":
            rows = 0
            lines = (_encoded_lines(batch, fmt) if fmt in LINE_FORMATS else
                     (orjson.dumps(r, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
                      for r in sft_records(batch)))
            with open(partial, "wb", buffering=1 << 20) as handle:
                for line in _counted(lines, progress):
                    if line is not None:
                        handle.write(line)
                        rows += 1
        elif fmt == "parquet":
            rows = write_parquet(_counted(records(batch), progress), partial)
        else:
            with open(partial, "w", encoding="utf-8", newline="") as handle:
                rows = write_csv(_counted(records(batch), progress), handle)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return {"name": path.name, "format": fmt, "rows": rows, "sha256": _sha256(path), "size": path.stat().st_size}


def manifest(batch: Batch, files: list[dict]) -> dict:
    """The manifest of a batch's exported ``files``: the freeze's summary, counts, each file's sha256."""
    counts = Counter()
    judged = Turn.objects.filter(batch=batch, submitted_at__isnull=False)
    for focus, strength, safety_bin, split, n in judged.values_list(
            "snapshot__focus", "strength", "safety_bin", "split").annotate(n=Count("id")).order_by():
        counts[f"focus={focus}"] += n
        counts[f"strength={strength or 'both_unusable'}"] += n
        if safety_bin:
            counts[f"safety_bin={safety_bin}"] += n
        counts[f"split={split}"] += n
    counts["demonstrations"] = Demonstration.objects.filter(batch=batch).count()
    return {"batch": str(batch), "schema_version": SCHEMA_VERSION, "summary": batch.summary,
            "files": {f["name"]: {"format": f["format"], "rows": f["rows"], "sha256": f["sha256"]} for f in files},
            "counts": dict(sorted(counts.items()))}


def manifest_write(out_dir: Path, content: dict) -> Path:
    path = Path(out_dir) / "manifest.json"
    partial = path.with_name(f"manifest.json.{uuid.uuid4().hex[:12]}.partial")
    partial.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
    partial.replace(path)
    return path


def batch_export(*, batch: Batch, admin, out_dir: Path | None = None, formats=FORMATS) -> dict:
    """Write the batch's files and their manifest in this process; returns the manifest."""
    _check(batch, admin)
    for fmt in formats:
        check_format(fmt)
    out_dir = Path(out_dir or settings.EXPORT_DIR / str(batch))
    files = [export_write(batch=batch, fmt=fmt, out_dir=out_dir) for fmt in formats]
    content = manifest(batch, files)
    manifest_write(out_dir, content)
    return content
