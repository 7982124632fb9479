"""Train a reward model with the Llama 2 margin loss, and evaluate it the paper's way.

Pure Python + torch/transformers/TRL, no Django. Runnable alone:

    python -m training.jobs.reward --train train.jsonl --eval test.jsonl --base var/models/smollm2-135m-instruct \
        --out var/checkpoints/rm-helpfulness
    accelerate launch -m training.jobs.reward --train … --eval … --base … --out …

Input: Tandem's `trl` export (or any TRL conversational preference file with `prompt`, `chosen`,
`rejected`; `strength` and `focus` columns are used when present). TRL's RewardTrainer reads the
per-example `margin`; here it is recomputed from `strength` with the chosen table. No pair is
dropped: a pair longer than `max_length` keeps its last `max_length` tokens (the context is cut
from the left) and the count is reported. Metrics are printed as JSON lines while training; the
checkpoint (safetensors) carries the config, seed and metrics; `eval.json` has the accuracy per
strength level and per focus (Table 8's layout), overall accuracy, and score histograms.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from core.preference_scale import MARGIN_TABLES, STRENGTHS, margin_for

from .common import (
    bf16_wanted,
    emit,
    messages_of,
    metrics_callback,
    parse_job,
    read_jsonl,
    score_token_ids,
    setting,
    tokenizer_of,
    train_top_layers,
)

MARGIN_TABLE_NAMES = tuple(MARGIN_TABLES)  # none, small, large


@dataclass
class RewardJobConfig:
    train: str = ""  # JSONL of preference pairs (Tandem's `trl` export)
    eval: str = ""  # JSONL of held-out pairs; empty: no evaluation
    base: str = ""  # chat checkpoint to start from; its LM head is replaced by a scalar head
    out: str = ""  # folder for the checkpoint, eval.json and metrics.jsonl
    margin_table: str = setting("small", "The margin m in -log σ(r_chosen − r_rejected − m) per strength: small "
                                         "(1, 2/3, 1/3, 0), large (3, 2, 1, 0) or none (LLAMA2.md).",
                                choices=MARGIN_TABLE_NAMES)
    learning_rate: float = setting(1e-5, "Max learning rate (the paper's 1e-5; TRL's default 1e-4 is not used).",
                                   low=1e-9, high=1e-2)
    trainable_layers: int = setting(0, "Train only the top N transformer blocks and the scalar head (much cheaper on "
                                       "a CPU); 0: all, as the paper.", low=0, high=1024)
    min_lr_ratio: float = 0.1  # cosine decay down to 10 % of the max LR
    warmup_ratio: float = 0.03  # 3 % of the steps …
    min_warmup_steps: int = 5  # … but at least 5
    epochs: float = setting(1.0, "Passes over the training pairs (the paper's one).", low=0.01, high=20)
    batch_size: int = setting(512, "Pairs per optimiser step (the paper's 512); the rest of a step accumulates.",
                              low=1, high=8192)
    per_device_batch_size: int = setting(8, "Pairs per forward pass on one device.", low=1, high=1024)
    max_length: int = setting(1024, "Tokens of prompt and response; a longer pair keeps its last tokens.",
                              low=16, high=32768)
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-5
    max_grad_norm: float = 1.0
    bf16: str = "auto"  # auto (when the hardware has it) | yes | no
    seed: int = setting(0, "Seeds data order and sampling; the same seed gives the same run.", low=0, high=2**31 - 1)
    logging_steps: int = 1
    histogram_bins: int = 20
    extra: dict = field(default_factory=dict)  # free-form notes carried into the checkpoint

    @property
    def device_batch_size(self) -> int:
        """Pairs per forward pass: at most a step's worth."""
        return min(self.per_device_batch_size, self.batch_size)

    @property
    def gradient_accumulation_steps(self) -> int:
        """Forward passes per optimiser step on one device (batch_size / device_batch_size, rounded up)."""
        return max(1, math.ceil(self.batch_size / self.device_batch_size))


def read_pairs(path: str) -> list[dict]:
    return read_jsonl(path, required=("prompt", "chosen", "rejected"))


def tokenize_pairs(pairs: list[dict], tokenizer, *, max_length: int, margin_table: str):
    """chosen_ids / rejected_ids / margin per pair; left-truncated to max_length, never dropped."""
    rows, truncated = [], 0
    for pair in pairs:
        prompt = messages_of(pair["prompt"], "user")
        ids, cut = {}, False
        for side in ("chosen", "rejected"):
            conversation = prompt + messages_of(pair[side], "assistant")
            tokens = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=False)
            if hasattr(tokens, "input_ids"):
                tokens = tokens["input_ids"]
            if len(tokens) > max_length:
                tokens, cut = tokens[-max_length:], True
            ids[side] = list(tokens)
        truncated += cut
        if margin_table == "none":
            margin = 0.0
        elif pair.get("strength"):
            margin = margin_for(pair["strength"], margin_table)
        else:
            margin = float(pair.get("margin") or 0.0)
        rows.append({"chosen_ids": ids["chosen"], "rejected_ids": ids["rejected"], "margin": margin})
    return rows, truncated


def histogram(values: list[float], bins: int) -> dict:
    if not values:
        return {"edges": [], "counts": []}
    low, high = min(values), max(values)
    if high == low:
        high = low + 1e-6
    width = (high - low) / bins
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, int((value - low) / width))] += 1
    return {"edges": [low + i * width for i in range(bins + 1)], "counts": counts}


def _answer_length(side) -> int:
    """Characters of a pair side's answer (its last message, or the text itself)."""
    if isinstance(side, list):
        return len(side[-1].get("content") or "") if side else 0
    return len(side or "")


def evaluate(model, tokenizer, pairs: list[dict], *, max_length: int, bins: int, batch_size: int = 8) -> dict:
    """Accuracy (chosen scored above rejected) per strength level and per focus, and histograms."""
    rows, _ = tokenize_pairs(pairs, tokenizer, max_length=max_length, margin_table="none")
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    scores = {side: score_token_ids(model, [r[f"{side}_ids"] for r in rows], pad_id=pad, batch_size=batch_size)
              for side in ("chosen", "rejected")}
    correct = defaultdict(lambda: [0, 0])
    for pair, chosen, rejected in zip(pairs, scores["chosen"], scores["rejected"]):
        hit = chosen > rejected
        strength, focus = pair.get("strength") or "unknown", pair.get("focus") or "unknown"
        # Whether the annotators' choice was the longer answer: a reward model that learnt length is
        # right where it was and wrong where it was not (pairs of equal length are in neither).
        lengths = _answer_length(pair["chosen"]), _answer_length(pair["rejected"])
        longer = () if lengths[0] == lengths[1] else (f"longer={'chosen' if lengths[0] > lengths[1] else 'rejected'}",)
        for key in ("overall", f"strength={strength}", f"focus={focus}", f"focus={focus},strength={strength}",
                    *longer):
            correct[key][0] += hit
            correct[key][1] += 1
    accuracy = {key: round(100 * hits / n, 2) for key, (hits, n) in sorted(correct.items())}
    counts = {key: n for key, (_, n) in sorted(correct.items())}
    focuses = sorted({key.split("=", 1)[1] for key in accuracy if key.startswith("focus=") and "," not in key})
    return {
        "pairs": len(pairs),
        "accuracy": accuracy,
        "counts": counts,
        "accuracy_per_strength": {s: accuracy.get(f"strength={s}") for s in STRENGTHS},
        # Llama 2 Table 8: one row per test set (focus), one column per strength level, then the average.
        "table": {focus: {**{s: accuracy.get(f"focus={focus},strength={s}") for s in STRENGTHS},
                          "average": accuracy[f"focus={focus}"]} for focus in focuses},
        "length_bias": {"chosen_longer": {"accuracy": accuracy.get("longer=chosen"),
                                          "pairs": counts.get("longer=chosen", 0)},
                        "chosen_shorter": {"accuracy": accuracy.get("longer=rejected"),
                                           "pairs": counts.get("longer=rejected", 0)}},
        "histograms": {side: histogram(values, bins) for side, values in scores.items()},
        "mean_score": {side: (sum(v) / len(v) if v else None) for side, v in scores.items()},
    }


def main(config: RewardJobConfig) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    tokenizer = tokenizer_of(config.base)
    train_pairs = read_pairs(config.train)
    eval_pairs = read_pairs(config.eval) if config.eval else []
    rows, truncated = tokenize_pairs(train_pairs, tokenizer, max_length=config.max_length,
                                     margin_table=config.margin_table)
    use_bf16 = bf16_wanted(config.bf16)
    # float32 master weights, bf16 autocast: a 1e-5 step is below bf16's precision for most weights.
    model = AutoModelForSequenceClassification.from_pretrained(config.base, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    trained = train_top_layers(model, config.trainable_layers)
    main_process = int(os.environ.get("RANK", "0")) == 0  # under accelerate/torchrun, rank 0 alone reports
    if main_process:
        emit("data", train_pairs=len(train_pairs), eval_pairs=len(eval_pairs), truncated=truncated,
             margin_table=config.margin_table, **trained)

    pairs_per_step = config.device_batch_size * config.gradient_accumulation_steps
    total_steps = max(1, math.ceil(len(rows) * config.epochs / pairs_per_step))
    warmup = max(config.min_warmup_steps, math.ceil(config.warmup_ratio * total_steps))
    metrics_path = out / "metrics.jsonl"

    args = RewardConfig(
        output_dir=str(out / "trainer"), learning_rate=config.learning_rate, num_train_epochs=config.epochs,
        per_device_train_batch_size=config.device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": config.min_lr_ratio},
        warmup_steps=warmup, weight_decay=config.weight_decay, adam_beta1=config.adam_beta1,
        adam_beta2=config.adam_beta2, adam_epsilon=config.adam_epsilon, max_grad_norm=config.max_grad_norm,
        max_length=None, bf16=use_bf16, seed=config.seed, logging_steps=config.logging_steps,
        save_strategy="no", report_to=[], disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
    )
    trainer = RewardTrainer(model=model, args=args, processing_class=tokenizer,
                            train_dataset=Dataset.from_list(rows), callbacks=[metrics_callback(metrics_path)])
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    summary = {"train_loss": result.training_loss, "steps": trainer.state.global_step, "seconds": round(seconds, 2),
               "pairs_per_second": round(len(rows) * config.epochs / seconds, 2),
               "tokens_per_second": round(sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows)
                                          * config.epochs / seconds, 1),
               "truncated_pairs": truncated, "warmup_steps": warmup, "bf16": use_bf16}
    evaluation = evaluate(trainer.model, tokenizer, eval_pairs, max_length=config.max_length,
                          bins=config.histogram_bins) if eval_pairs else None

    trainer.save_model(str(out))  # safetensors; every rank takes part (FSDP / ZeRO-3 gather), rank 0 writes
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(out))
        (out / "eval.json").write_text(json.dumps(evaluation, indent=2) + "\n")
        (out / "tandem_job.json").write_text(json.dumps(
            {"job": "reward", "config": dataclasses.asdict(config), "seed": config.seed, "metrics": summary,
             "eval": ({k: evaluation[k] for k in ("pairs", "accuracy", "accuracy_per_strength")}
                      if evaluation else None)},
            indent=2) + "\n")
    if trainer.is_world_process_zero():
        emit("done", **summary, eval_accuracy=evaluation["accuracy"] if evaluation else None)
    return {"summary": summary, "eval": evaluation}


def parse(argv: list[str]) -> RewardJobConfig:
    return parse_job(RewardJobConfig, argv, description=__doc__, required=("train", "base", "out"))


if __name__ == "__main__":
    main(parse(sys.argv[1:]))
