"""Imports of open-source preference data from local files, all or nothing.

Each reader turns one record of its format into a comparison (context messages, chosen text,
rejected text, and the strength or margin where the format has one) or raises ImportFormatError
naming the line and the problem. Files are JSON lines, a JSON array (read as a stream), or Parquet.
A malformed record anywhere imports nothing; duplicates (within the file or already in the source)
are skipped and counted.

Sizes are bounded as they are for what people type: a file of at most IMPORT_MAX_BYTES and
IMPORT_MAX_ROWS records, a JSON line of at most MAX_LINE_BYTES, a prompt or message of at most the
workspace's MAX_MESSAGE_CHARS, an answer of at most MAX_ANSWER_CHARS (a demonstration's), a context
of at most MAX_CONTEXT_MESSAGES messages and MAX_CONTEXT_CHARS in all (a pair's). A small Parquet
file can hold a very large text: each field is checked, not only the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from accounts.roles import ADMIN, has_role
from modelserving.services import MAX_CONTEXT_CHARS

from ..models import Focus, ImportedComparison, PreferenceSource, Strength
from ..text import MAX_ANSWER_CHARS, MAX_MESSAGE_CHARS

BULK = 1000
MAX_CONTEXT_MESSAGES = 200  # as a pair's context over the API
# A record holds a context and two answers within the limits above: a line longer than this, in
# UTF-8, cannot be one, and is refused before it is read whole.
MAX_LINE_BYTES = 4 * (MAX_CONTEXT_CHARS + 2 * MAX_ANSWER_CHARS)
# A margin is a handful of units in the reward model's loss (Llama 2's large table tops at 3).
MAX_MARGIN = 100.0


class ImportFormatError(ValidationError):
    def __init__(self, line: int, problem: str):
        super().__init__(f"line {line}: {problem}")
        self.line, self.problem = line, problem


@dataclass
class ImportReport:
    source: str
    imported: int = 0
    duplicates: int = 0
    skipped: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    context: list
    chosen: str
    rejected: str
    strength: str = ""
    margin: float | None = None
    focus: str = ""


def _text(value, what: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be non-empty text")
    if "\x00" in value:  # PostgreSQL's text refuses it
        raise ValueError(f"{what} contains a NUL character")
    if len(value) > limit:
        raise ValueError(f"{what} is {len(value):,} characters long; at most {limit:,} are taken")
    return value


def _answer(value, what: str) -> str:
    return _text(value, what, MAX_ANSWER_CHARS)


def _context(messages: list[dict], what: str) -> list[dict]:
    if len(messages) > MAX_CONTEXT_MESSAGES:
        raise ValueError(f"{what} has {len(messages)} messages; at most {MAX_CONTEXT_MESSAGES} are taken")
    total = sum(len(message["content"]) for message in messages)
    if total > MAX_CONTEXT_CHARS:
        raise ValueError(f"{what} is {total:,} characters long in all; at most {MAX_CONTEXT_CHARS:,} are taken")
    return messages


def _shown(value) -> str:
    """A value for an error message, however large."""
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _margin(value, what: str) -> float | None:
    """None, or a finite number within ±MAX_MARGIN (1e30, 10**400, NaN and Infinity are refused)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or abs(number) > MAX_MARGIN:
        raise ValueError(f"{what} {_shown(value)} is out of range: give a number between "
                         f"-{MAX_MARGIN:g} and {MAX_MARGIN:g}")
    return number


def _focus(value) -> str:
    if value in (None, ""):
        return ""
    if value not in Focus.values:
        raise ValueError(f"unknown focus {_shown(value)}; use {' or '.join(Focus.values)}")
    return value


def _messages(value, what: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": "user", "content": _text(value, what)}]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{what} must be text or a non-empty list of messages")
    messages = []
    for message in value:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant") \
                or not isinstance(message.get("content"), str):
            raise ValueError(f"{what} holds something that is not a chat message with a role and a content")
        if "\x00" in message["content"]:
            raise ValueError(f"{what} contains a NUL character")
        limit = MAX_ANSWER_CHARS if message["role"] == "assistant" else MAX_MESSAGE_CHARS
        if len(message["content"]) > limit:
            raise ValueError(f"a message of {what} is {len(message['content']):,} characters long; "
                             f"at most {limit:,} are taken")
        messages.append({"role": message["role"], "content": message["content"]})
    return messages


def _final_answer(value, what: str) -> str:
    """A response given as text, or as messages whose last one is the assistant's."""
    if isinstance(value, str):
        return _answer(value, what)
    messages = _messages(value, what)
    if messages[-1]["role"] != "assistant":
        raise ValueError(f"the last message of {what} is not the assistant's")
    return messages[-1]["content"]


_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def _hh_transcript(text: str, what: str) -> list[dict]:
    text = _text(text, what, MAX_CONTEXT_CHARS + MAX_ANSWER_CHARS)
    if not text.startswith("\n\n"):
        text = "\n\n" + text
    parts = _HH_TURN.split(text)
    if parts[0].strip() or len(parts) < 5:
        raise ValueError(f"{what} is not a '\\n\\nHuman: … \\n\\nAssistant: …' transcript")
    roles = {"Human": "user", "Assistant": "assistant"}
    return _messages([{"role": roles[parts[i]], "content": parts[i + 1]} for i in range(1, len(parts), 2)], what)


def read_hh_rlhf(record: dict) -> Comparison:
    chosen = _hh_transcript(record.get("chosen"), "chosen")
    rejected = _hh_transcript(record.get("rejected"), "rejected")
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise ValueError("a transcript does not end with the assistant's answer")
    if chosen[:-1] != rejected[:-1]:
        raise ValueError("chosen and rejected transcripts do not share the same dialogue before the answer")
    return Comparison(context=_context(chosen[:-1], "the dialogue"), chosen=chosen[-1]["content"],
                      rejected=rejected[-1]["content"])


def read_shp(record: dict) -> Comparison:
    labels = record.get("labels")
    if labels not in (0, 1):
        raise ValueError("labels must be 1 (A preferred) or 0 (B preferred)")
    a, b = _answer(record.get("human_ref_A"), "human_ref_A"), _answer(record.get("human_ref_B"), "human_ref_B")
    chosen, rejected = (a, b) if labels == 1 else (b, a)
    return Comparison(context=[{"role": "user", "content": _text(record.get("history"), "history")}],
                      chosen=chosen, rejected=rejected, focus="helpfulness")


def read_ultrafeedback(record: dict) -> Comparison:
    chosen = _messages(record.get("chosen"), "chosen")
    rejected = _messages(record.get("rejected"), "rejected")
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise ValueError("chosen and rejected must end with the assistant's answer")
    if chosen[:-1] != rejected[:-1]:
        raise ValueError("chosen and rejected do not share the same prompt")
    if "prompt" in record and chosen[:-1] and chosen[-2]["content"] != record["prompt"]:
        raise ValueError("prompt differs from the user message in chosen")
    return Comparison(context=_context(chosen[:-1], "prompt"), chosen=chosen[-1]["content"],
                      rejected=rejected[-1]["content"], focus="helpfulness")


def read_trl(record: dict) -> Comparison:
    if "prompt" not in record:
        raise ValueError("no prompt (the implicit-prompt form is not supported: give prompt, chosen, rejected)")
    context = _context(_messages(record["prompt"], "prompt"), "prompt")
    return Comparison(context=context, chosen=_final_answer(record.get("chosen"), "chosen"),
                      rejected=_final_answer(record.get("rejected"), "rejected"),
                      margin=_margin(record.get("margin"), "margin"))


def read_tandem(record: dict) -> Comparison | None:
    if record.get("schema_version") != 1:
        raise ValueError("not a Tandem full export record (schema_version 1)")
    if record.get("both_unusable") or record.get("chosen") is None:
        return None  # no preference to import
    strength = record.get("strength")
    if strength not in Strength.values:
        raise ValueError(f"unknown strength {_shown(strength)}")
    return Comparison(context=_context(_messages(record.get("context"), "context"), "context"),
                      chosen=_answer(record["chosen"].get("text"), "chosen.text"),
                      rejected=_answer(record["rejected"].get("text"), "rejected.text"),
                      strength=strength, margin=_margin(record.get("margin_small"), "margin_small"),
                      focus=_focus(record.get("focus")))


READERS = {
    PreferenceSource.Kind.HH_RLHF: read_hh_rlhf,
    PreferenceSource.Kind.SHP: read_shp,
    PreferenceSource.Kind.ULTRAFEEDBACK: read_ultrafeedback,
    PreferenceSource.Kind.TRL: read_trl,
    PreferenceSource.Kind.TANDEM: read_tandem,
}


def read_records(path: Path) -> Iterator[tuple[int, object]]:
    """(line, record) from a .jsonl, .json (an array, read as a stream) or .parquet file; for a
    .json file and a Parquet file the number is the record's place. At most IMPORT_MAX_ROWS."""
    path = Path(path)
    for number, record in _records(path):
        if number > settings.IMPORT_MAX_ROWS:
            raise ImportFormatError(number, f"more than {settings.IMPORT_MAX_ROWS:,} records in one import "
                                            "(IMPORT_MAX_ROWS): split the file")
        yield number, record


def _records(path: Path) -> Iterator[tuple[int, object]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except Exception as error:
            raise ImportFormatError(0, f"not a readable Parquet file ({error})") from error
        row = 0
        for batch in parquet.iter_batches(batch_size=BULK):
            for record in batch.to_pylist():
                row += 1
                yield row, record
        return
    if path.suffix == ".json":
        yield from _json_array(path)
        return
    with open(path, "rb") as handle:
        number = 0
        while line := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                raise ImportFormatError(number, f"the line is longer than {MAX_LINE_BYTES:,} bytes: no record "
                                                "within the limits is that long")
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except (ValueError, UnicodeDecodeError) as error:
                raise ImportFormatError(number, f"not valid JSON ({error.args[0]})") from error


def _json_array(path: Path) -> Iterator[tuple[int, object]]:
    """The records of a JSON array, one at a time (ijson): never the whole file in memory."""
    import ijson

    with open(path, "rb") as handle:
        try:
            first = handle.read(1)
            while first and first.isspace():
                first = handle.read(1)
            if first != b"[":
                raise ImportFormatError(1, "a .json file must hold an array of records")
            handle.seek(0)
            yield from enumerate(ijson.items(handle, "item", use_float=True), start=1)
        except ijson.JSONError as error:
            raise ImportFormatError(0, f"not valid JSON ({error})") from error


def _hash(comparison: Comparison) -> str:
    payload = json.dumps([comparison.context, comparison.chosen, comparison.rejected], sort_keys=True,
                         ensure_ascii=False)
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def refuse_oversized(size: int) -> None:
    """ValidationError for a file over IMPORT_MAX_BYTES (an upload is checked before it is copied)."""
    if size > settings.IMPORT_MAX_BYTES:
        raise ValidationError(f"The file is {size / 2**20:,.1f} MiB; at most {settings.IMPORT_MAX_BYTES / 2**20:,.0f} "
                              "MiB are imported at once (IMPORT_MAX_BYTES): split it.")


def preferences_import(*, path: Path, kind: str, source_name: str, admin, focus: str = "",
                       description: str = "") -> ImportReport:
    """Import a file into the source ``source_name`` (created if new). All or nothing."""
    if not has_role(admin, ADMIN):
        raise PermissionDenied("Only admins import preference data.")
    if kind not in READERS:
        raise ValidationError(f"Unknown format {kind!r}; use one of {', '.join(READERS)}.")
    refuse_oversized(Path(path).stat().st_size)
    reader = READERS[kind]
    report = ImportReport(source=source_name)
    with transaction.atomic():
        source, created = PreferenceSource.objects.get_or_create(
            name=source_name, defaults={"kind": kind, "focus": focus, "description": description,
                                        "created_by": admin})
        if not created and source.kind != kind:
            raise ValidationError(f"Source {source_name!r} holds {source.kind} data, not {kind}.")
        seen = set(source.comparisons.values_list("content_hash", flat=True))
        pending = []
        for line, record in read_records(path):
            if not isinstance(record, dict):
                raise ImportFormatError(line, "a record must be a JSON object")
            try:
                comparison = reader(record)
            except (ValueError, TypeError, AttributeError, KeyError, ArithmeticError) as error:
                raise ImportFormatError(line, str(error)) from error
            if comparison is None:
                report.skipped["no preference"] = report.skipped.get("no preference", 0) + 1
                continue
            if comparison.chosen == comparison.rejected:
                raise ImportFormatError(line, "chosen and rejected are the same text")
            digest = _hash(comparison)
            if digest in seen:
                report.duplicates += 1
                continue
            seen.add(digest)
            pending.append(ImportedComparison(
                source=source, context=comparison.context, chosen=comparison.chosen, rejected=comparison.rejected,
                strength=comparison.strength, margin=comparison.margin, focus=comparison.focus or focus,
                content_hash=digest, line=line))
            if len(pending) >= BULK:
                ImportedComparison.objects.bulk_create(pending)
                report.imported += len(pending)
                pending = []
        ImportedComparison.objects.bulk_create(pending)
        report.imported += len(pending)
    return report
