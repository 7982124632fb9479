"""Parquet (pyarrow) and CSV writers for the `full` records, streamed row group by row group."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from itertools import islice

import pyarrow as pa
import pyarrow.parquet as pq

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
RESPONSE = pa.struct([
    ("text", pa.string()), ("variant", pa.string()), ("model", pa.string()), ("temperature", pa.float64()),
    ("top_p", pa.float64()), ("seed", pa.int64()), ("max_tokens", pa.int64()), ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()), ("latency_ms", pa.int64()), ("finish_reason", pa.string()),
    ("side", pa.string()),
])
SCHEMA = pa.schema([
    ("schema_version", pa.int32()), ("batch", pa.string()), ("split", pa.string()), ("turn_id", pa.int64()),
    ("dialogue_id", pa.int64()), ("turn_index", pa.int32()), ("focus", pa.string()),
    ("context", pa.list_(MESSAGE)), ("chosen", RESPONSE), ("rejected", RESPONSE),
    ("responses_unusable", pa.list_(RESPONSE)), ("strength", pa.string()), ("margin_small", pa.float64()),
    ("margin_large", pa.float64()), ("chosen_safe", pa.bool_()), ("rejected_safe", pa.bool_()),
    ("safety_bin", pa.string()), ("risk_category", pa.string()), ("attack_vector", pa.string()),
    ("both_unusable", pa.bool_()), ("unusable_reason", pa.string()), ("annotator", pa.string()),
    ("vendor", pa.string()), ("guideline_version", pa.int32()), ("time_spent_ms", pa.int64()),
    ("turn_created_at", pa.string()), ("submitted_at", pa.string()),
])
ROW_GROUP = 5000


def write_parquet(records: Iterable[dict], path) -> int:
    """Write ``records`` to ``path`` one row group at a time; returns the row count."""
    rows = 0
    iterator = iter(records)
    with pq.ParquetWriter(str(path), SCHEMA, compression="zstd", write_statistics=True) as writer:
        while True:
            chunk = list(islice(iterator, ROW_GROUP))
            if not chunk:
                break
            writer.write_table(pa.Table.from_pylist(chunk, schema=SCHEMA))
            rows += len(chunk)
        if rows == 0:
            writer.write_table(SCHEMA.empty_table())
    return rows


CSV_COLUMNS = [
    "batch", "split", "turn_id", "dialogue_id", "turn_index", "focus", "prompt", "context_json", "chosen_text",
    "rejected_text", "strength", "margin_small", "margin_large", "chosen_safe", "rejected_safe", "safety_bin",
    "risk_category", "attack_vector", "both_unusable", "unusable_reason", "chosen_variant", "rejected_variant",
    "chosen_side", "chosen_temperature", "rejected_temperature", "annotator", "guideline_version",
    "time_spent_ms", "submitted_at",
]
# A cell a spreadsheet would evaluate as a formula (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value):
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_row(record: dict) -> dict:
    chosen, rejected = record["chosen"] or {}, record["rejected"] or {}
    row = {
        **{key: record[key] for key in ("batch", "split", "turn_id", "dialogue_id", "turn_index", "focus",
                                         "strength", "margin_small", "margin_large", "chosen_safe",
                                         "rejected_safe", "safety_bin", "risk_category", "attack_vector",
                                         "both_unusable", "unusable_reason", "annotator", "guideline_version",
                                         "time_spent_ms", "submitted_at")},
        "prompt": record["context"][-1]["content"],
        "context_json": json.dumps(record["context"], ensure_ascii=False),
        "chosen_text": chosen.get("text"), "rejected_text": rejected.get("text"),
        "chosen_variant": chosen.get("variant"), "rejected_variant": rejected.get("variant"),
        "chosen_side": chosen.get("side"), "chosen_temperature": chosen.get("temperature"),
        "rejected_temperature": rejected.get("temperature"),
    }
    return {key: neutralise(value) for key, value in row.items()}


def write_csv(records: Iterable[dict], handle) -> int:
    writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    rows = 0
    for record in records:
        writer.writerow(csv_row(record))
        rows += 1
    return rows
