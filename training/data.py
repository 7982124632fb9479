"""A reward model's data: which pairs it trains on, in what mix, and the held-out pairs it is
evaluated on, written as the TRL preference files the job reads (through the export code).

The mix follows Llama 2 (LLAMA2.md). Every pair belongs to a *primary* or a *secondary* part:
all primary pairs are used; secondary pairs are sampled uniformly so that primary pairs make
`primary_share` of the training set.

- helpfulness RM: primary = the helpfulness pairs of the batches; secondary = the safety pairs
  and every imported source ("all helpfulness data plus an equal share of safety and open-source
  data": `primary_share` 0.5);
- safety RM: primary = the safety pairs and the imported sources about safety (e.g. HH harmless);
  secondary = the helpfulness pairs and the other sources (90/10: `primary_share` 0.9).

Evaluation: the held-out (`test`) split of every batch trained on, both focuses, so the job
reports accuracy per focus and per strength level as in Table 8.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
from django.core.exceptions import ValidationError

from annotation.batches.exports import records, trl_record
from annotation.models import Batch, Focus, ImportedComparison, PreferenceSource, Turn

PRIMARY, SECONDARY, EXCLUDED = "primary", "secondary", "exclude"
ROLES = (PRIMARY, SECONDARY, EXCLUDED)
DEFAULT_PRIMARY_SHARE = {Focus.HELPFULNESS: 0.5, Focus.SAFETY: 0.9}


def other_focus(focus: str) -> str:
    return Focus.SAFETY if focus == Focus.HELPFULNESS else Focus.HELPFULNESS


def default_source_role(source: PreferenceSource, focus: str) -> str:
    return PRIMARY if focus == Focus.SAFETY and source.focus == Focus.SAFETY else SECONDARY


def default_mix(focus: str, sources: list[PreferenceSource] = ()) -> dict:
    return {"primary_share": DEFAULT_PRIMARY_SHARE[focus], "other_focus": SECONDARY,
            "sources": {source.name: default_source_role(source, focus) for source in sources}}


def _judged(batch: Batch, split: str):
    return Turn.objects.filter(batch=batch, submitted_at__isnull=False, split=split,
                               chosen_generation__isnull=False)


def sources_named(names, errors: dict) -> dict[str, PreferenceSource]:
    """name → the imported sources ``names`` names; a refusal in ``errors["sources"]`` for any unknown."""
    known = {s.name: s for s in PreferenceSource.objects.filter(name__in=list(names))}
    if missing := sorted(set(names) - set(known)):
        errors["sources"] = f"No imported source named {', '.join(missing)}."
    return known


def part_sizes(*, focus: str, batches: list[Batch], sources: list[PreferenceSource], mix: dict) -> dict:
    """{part name: (role, pairs)}: what each batch focus and source contributes before sampling."""
    parts = {}
    for batch in batches:
        train = _judged(batch, "train")
        parts[f"{batch}:{focus}"] = (PRIMARY, train.filter(dialogue__focus=focus).count())
        if mix["other_focus"] != EXCLUDED:
            parts[f"{batch}:{other_focus(focus)}"] = (mix["other_focus"],
                                                      train.filter(dialogue__focus=other_focus(focus)).count())
    for source in sources:
        role = mix["sources"].get(source.name, default_source_role(source, focus))
        if role != EXCLUDED:
            parts[f"source:{source.name}"] = (role, source.comparisons.count())
    return parts


def _batch_pairs(batch: Batch, *, split: str, focus: str | None) -> Iterator[dict]:
    for record in records(batch):
        if record["split"] == split and (focus is None or record["focus"] == focus):
            row = trl_record(record, margin_table=None)
            if row is not None:
                yield {**row, "source": str(batch)}


def _source_pairs(source: PreferenceSource) -> Iterator[dict]:

    rows = ImportedComparison.objects.filter(source=source).order_by("pk")
    for row in rows.values("pk", "context", "chosen", "rejected", "strength", "margin", "focus").iterator(2000):
        # A strength's margin is the reward job's (its margin_table); a source's own margin is kept for
        # the comparisons that come with one and no strength.
        margin = None if row["strength"] else (row["margin"] or 0.0)
        yield {"prompt": row["context"], "chosen": [{"role": "assistant", "content": row["chosen"]}],
               "rejected": [{"role": "assistant", "content": row["rejected"]}], "margin": margin,
               "strength": row["strength"] or None, "focus": row["focus"] or source.focus or None,
               "source": source.name, "comparison_id": row["pk"]}


def _pairs_of(name: str, *, batches: dict, sources: dict) -> Iterator[dict]:
    if name.startswith("source:"):
        return _source_pairs(sources[name.removeprefix("source:")])
    label, focus = name.rsplit(":", 1)
    return _batch_pairs(batches[label], split="train", focus=focus)


def _write(handle, row: dict) -> None:
    handle.write(orjson.dumps(row, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE))


def reward_data_write(*, focus: str, batches: list[Batch], sources: list[PreferenceSource], mix: dict,
                      seed: int, out_dir: Path) -> dict:
    """Write train.jsonl and eval.jsonl under out_dir; returns the counts per part.

    Deterministic: the same inputs and seed give the same files."""
    parts = part_sizes(focus=focus, batches=batches, sources=sources, mix=mix)
    primary = sum(n for role, n in parts.values() if role == PRIMARY)
    secondary = sum(n for role, n in parts.values() if role == SECONDARY)
    if primary == 0:
        raise ValidationError(f"No {focus} pairs to train on in the training split of the chosen data.")
    share = mix["primary_share"]
    wanted = secondary if share <= 0 else round(primary * (1 - share) / share)
    keep = set(random.Random(seed).sample(range(secondary), min(wanted, secondary)))
    by_label = {str(b): b for b in batches}
    by_name = {s.name: s for s in sources}
    out_dir.mkdir(parents=True, exist_ok=True)
    used, index = Counter(), 0
    with open(out_dir / "train.jsonl", "wb") as handle:
        for name, (role, _) in parts.items():
            for row in _pairs_of(name, batches=by_label, sources=by_name):
                if role == SECONDARY:
                    index += 1
                    if index - 1 not in keep:
                        continue
                _write(handle, row)
                used[name] += 1
    held_out = Counter()
    with open(out_dir / "eval.jsonl", "wb") as handle:
        for batch in batches:
            for row in _batch_pairs(batch, split="test", focus=None):
                _write(handle, row)
                held_out[f"{batch}:{row['focus']}"] += 1
    return {
        "train_pairs": sum(used.values()), "eval_pairs": sum(held_out.values()),
        "primary_pairs": primary, "secondary_available": secondary, "secondary_used": len(keep),
        "parts": {name: {"role": role, "available": n, "used": used[name]} for name, (role, n) in parts.items()},
        "held_out": dict(held_out),
    }


def is_adversarial(record: dict) -> bool:
    """A judged turn whose prompt was adversarial: written for the safety focus, or tagged with a risk
    category or an attack vector (red teaming)."""
    return record["focus"] == Focus.SAFETY or bool(record.get("risk_category") or record.get("attack_vector"))


def prompt_rows(*, batches: list[Batch], split: str = "train", adversarial: bool = False) -> Iterator[dict]:
    """The prompts of the batches' judged turns in ``split`` (each context as sent to the models, once):
    `{"messages": [...], "is_safety": bool, "label": focus, "risk_category": slug or ""}`. Safety-focus
    prompts count as adversarial for the combined reward; ``adversarial`` keeps only adversarial ones."""
    seen = set()
    for batch in batches:
        for record in records(batch):
            if record["split"] != split or (adversarial and not is_adversarial(record)):
                continue
            key = orjson.dumps(record["context"], option=orjson.OPT_SORT_KEYS)
            if key in seen:
                continue
            seen.add(key)
            yield {"messages": record["context"], "is_safety": record["focus"] == Focus.SAFETY,
                   "label": record["focus"], "risk_category": record.get("risk_category") or "",
                   "source": str(batch), "turn_id": record["turn_id"]}


def prompts_write(*, batches: list[Batch], out: Path, split: str = "train", adversarial: bool = False) -> int:
    """prompt_rows written as JSONL, for rejection sampling, PPO, RLOO and context distillation.
    Returns the number written."""
    written = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as handle:
        for row in prompt_rows(batches=batches, split=split, adversarial=adversarial):
            _write(handle, row)
            written += 1
    return written
