"""Direct Preference Optimisation on a frozen batch's preference pairs, with TRL's DPOTrainer.

Pure Python + torch/transformers/TRL, no Django. Runnable alone:

    python -m training.jobs.dpo --train train.jsonl --eval test.jsonl --focus helpfulness \
        --base var/models/smollm2-135m-instruct --out var/checkpoints/dpo
    accelerate launch -m training.jobs.dpo --train … --base … --out …

Input: the reward model's preference files (training/data.py writes both: the batch's pairs of the
run's focus, mixed with the other focus and imported sources as a reward model's are), TRL's
conversational `prompt`, `chosen`, `rejected`, with `strength` and `focus` where known.

The start checkpoint is the policy and, unless `--reference` names another with the same
tokenizer, the frozen reference; its log-probabilities are computed once before training. What
a pair's strength does is the `strength_rule`:

- `drop_negligible` (the default): pairs rated "negligibly better / unsure" are left out; the
  paper's annotators disagree most on them (LLAMA2.md, Table 8: accuracy near chance);
- `weight`: every pair trains, drawn with a probability in proportion to its strength's weight
  (STRENGTH_WEIGHTS; a weighted sampler, so the expected loss is the weighted loss);
- `all`: every pair counts the same.

The loss is `sigmoid` (DPO), `ipo`, or `robust` (robust DPO: `label_smoothing` is the share of
labels taken to be flipped, for noisy annotators). While it trains, the held-out pairs of the
run's focus are scored every `eval_steps` optimiser steps and at the end: DPO's implicit reward
β·log(π/π_ref) of the chosen above the rejected (accuracy) and by how much (margin), overall and
per strength level in `eval.json`.

Writes, into `--out`: the checkpoint (safetensors, tokenizer, a sampling `generation_config.json`),
`eval.json`, `tandem_job.json` and `metrics.jsonl`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from core.preference_scale import BETTER, NEGLIGIBLY_BETTER, SIGNIFICANTLY_BETTER, SLIGHTLY_BETTER, STRENGTHS

from .common import (
    bf16_wanted,
    emit,
    metrics_callback,
    parse_job,
    policy_save,
    read_jsonl,
    setting,
    tokenizer_of,
    train_top_layers,
)

STRENGTH_RULES = ("drop_negligible", "weight", "all")
LOSS_TYPES = ("sigmoid", "ipo", "robust")
# The weight rule's draw weights; a pair without a strength (an imported source's) weighs 1.
STRENGTH_WEIGHTS = {SIGNIFICANTLY_BETTER: 1.0, BETTER: 0.75, SLIGHTLY_BETTER: 0.5, NEGLIGIBLY_BETTER: 0.25}


@dataclass
class DPOJobConfig:
    train: str = ""  # JSONL of preference pairs (TRL conversational: prompt, chosen, rejected)
    eval: str = ""  # JSONL of held-out pairs (same form); empty: no evaluation
    focus: str = ""  # evaluate on the held-out pairs of this focus only; empty: all of them
    base: str = ""  # the policy to start from
    reference: str = ""  # the frozen reference; empty: the base
    out: str = ""  # folder for the checkpoint, eval.json, tandem_job.json and metrics.jsonl
    beta: float = setting(0.1, "β: how far the policy may move from the reference (higher: less). For IPO, its "
                               "regularisation.", low=0.001, high=10.0)
    loss_type: str = setting("sigmoid", "sigmoid (DPO), ipo, or robust (robust DPO, for noisy labels: the label "
                                        "smoothing is the share taken to be flipped).", choices=LOSS_TYPES)
    label_smoothing: float = setting(0.0, "Share of preference labels taken to be wrong (robust and sigmoid "
                                          "losses; 0: none).", low=0.0, high=0.49)
    strength_rule: str = setting("drop_negligible", "What a pair's rated strength does: drop_negligible leaves out "
                                                    "'negligibly better / unsure' pairs, weight draws pairs in "
                                                    "proportion to their strength, all counts every pair the same.",
                                 choices=STRENGTH_RULES)
    learning_rate: float = setting(5e-7, "Initial learning rate (linear decay after warm-up).", low=1e-9, high=1e-2)
    warmup_ratio: float = 0.1  # share of the steps spent warming up
    epochs: float = setting(1.0, "Passes over the pairs.", low=0.01, high=20)
    per_device_batch_size: int = setting(4, "Pairs per forward pass on one device.", low=1, high=1024)
    gradient_accumulation_steps: int = setting(16, "Forward passes per optimiser step (4 × 16 = 64 pairs).",
                                               low=1, high=4096)
    max_length: int = setting(1024, "Tokens of prompt and answer; a longer pair loses the end of its answer.",
                              low=16, high=32768)
    eval_steps: int = setting(25, "Optimiser steps between two scorings of the held-out pairs.", low=1, high=100000)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    bf16: str = "auto"  # auto | yes | no; weights stay float32, compute in bf16
    gradient_checkpointing: bool = setting(True, "Recompute activations to save memory; off for tiny models.")
    trainable_layers: int = setting(0, "Fine-tune only the top N transformer blocks (and an untied head); 0: all.",
                                    low=0, high=1024)
    seed: int = setting(0, "Seeds data order and the weighted draw; the same seed gives the same run.",
                        low=0, high=2**31 - 1)
    logging_steps: int = 1


def pair_weight(pair: dict, rule: str) -> float | None:
    """How much a pair counts under the strength rule; None: left out."""
    strength = pair.get("strength")
    if rule == "drop_negligible":
        return None if strength == NEGLIGIBLY_BETTER else 1.0
    if rule == "weight":
        return STRENGTH_WEIGHTS.get(strength, 1.0)
    if rule == "all":
        return 1.0
    raise ValueError(f"unknown strength rule {rule!r}; use one of {', '.join(STRENGTH_RULES)}")


def _pair(row: dict, where: str) -> dict:
    """A TRL conversational preference row; the answers one assistant message each."""
    prompt = [{"role": "user", "content": row["prompt"]}] if isinstance(row.get("prompt"), str) else row.get("prompt")
    chosen, rejected = row.get("chosen"), row.get("rejected")
    answers = [[{"role": "assistant", "content": a}] if isinstance(a, str) else a for a in (chosen, rejected)]
    if not prompt or not all(isinstance(a, list) and a and a[-1].get("role") == "assistant" for a in answers):
        raise ValueError(f"{where}: a pair needs a prompt and two assistant answers")
    return {"prompt": [{"role": m["role"], "content": m["content"]} for m in prompt],
            "chosen": [{"role": m["role"], "content": m["content"]} for m in answers[0]],
            "rejected": [{"role": m["role"], "content": m["content"]} for m in answers[1]]}


def read_pairs(path: str, *, rule: str, focus: str = "") -> tuple[list[dict], list[float], list[str], dict]:
    """(pairs, their weights, their strengths, what was left out) of a preference file."""
    pairs, weights, strengths = [], [], []
    left_out = defaultdict(int)
    for number, row in enumerate(read_jsonl(path, required=("prompt", "chosen", "rejected")), start=1):
        if focus and row.get("focus") and row["focus"] != focus:
            left_out["other_focus"] += 1
            continue
        weight = pair_weight(row, rule)
        if weight is None:
            left_out[row.get("strength") or "unknown"] += 1
            continue
        pairs.append(_pair(row, f"{path}:{number}"))
        weights.append(weight)
        strengths.append(row.get("strength") or "unknown")
    return pairs, weights, strengths, dict(left_out)


def _held_out(trainer, pairs: list[dict], strengths: list[str]) -> dict:
    """DPO's implicit reward on the held-out pairs: accuracy and mean margin overall and per strength."""
    import torch

    trainer.model.eval()
    dataset = trainer.eval_dataset
    loader = trainer.get_eval_dataloader(dataset)
    margins: list[float] = []
    with torch.no_grad():
        for batch in loader:
            batch = trainer._prepare_inputs(batch)
            chosen, rejected = _implicit_rewards(trainer, batch)
            margins.extend((chosen - rejected).float().cpu().tolist())
    by_strength = defaultdict(list)
    for strength, margin in zip(strengths, margins, strict=True):
        by_strength[strength].append(margin)

    def summary(values):
        return {"pairs": len(values), "accuracy": sum(v > 0 for v in values) / len(values) if values else None,
                "margin": sum(values) / len(values) if values else None}

    return {"pairs": len(pairs), **summary(margins),
            "per_strength": {s: summary(by_strength[s]) for s in (*STRENGTHS, "unknown") if by_strength[s]}}


def _implicit_rewards(trainer, batch):
    """β·(log π − log π_ref) of the chosen and of the rejected answers of a collated batch."""
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    mask = batch["completion_mask"][..., 1:]
    logits = trainer.model(**inputs, use_cache=False).logits[:, :-1]
    targets = batch["input_ids"][..., 1:]
    logps = (logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask).sum(dim=1)
    chosen, rejected = logps.chunk(2, dim=0)
    return trainer.beta * (chosen - batch["ref_chosen_logps"]), trainer.beta * (rejected - batch["ref_rejected_logps"])


def main(config: DPOJobConfig) -> dict:
    import torch
    from datasets import Dataset
    from torch.utils.data import WeightedRandomSampler
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.jsonl"
    metrics_path.write_text("")
    torch.manual_seed(config.seed)
    tokenizer = tokenizer_of(config.base)
    train_pairs, weights, _, left_out = read_pairs(config.train, rule=config.strength_rule)
    eval_pairs, _, eval_strengths, _ = (read_pairs(config.eval, rule="all", focus=config.focus)
                                        if config.eval else ([], [], [], {}))
    if not train_pairs:
        raise ValueError(f"{config.train}: no pairs to train on under the strength rule {config.strength_rule}")

    use_bf16 = bf16_wanted(config.bf16)
    model = AutoModelForCausalLM.from_pretrained(config.base, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(config.reference or config.base, dtype=torch.float32)
    trained = train_top_layers(model, config.trainable_layers)

    class WeightedDPOTrainer(DPOTrainer):
        """Draws training pairs in proportion to their strength's weight (the `weight` rule)."""

        def _get_train_sampler(self, train_dataset=None):
            if config.strength_rule != "weight":
                return super()._get_train_sampler(train_dataset)
            generator = torch.Generator().manual_seed(config.seed)
            return WeightedRandomSampler(weights, num_samples=len(weights), replacement=True, generator=generator)

    args = DPOConfig(
        output_dir=str(out / "trainer"), learning_rate=config.learning_rate, num_train_epochs=config.epochs,
        per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, lr_scheduler_type="linear",
        warmup_steps=config.warmup_ratio, weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm,
        beta=config.beta, loss_type=[config.loss_type], label_smoothing=config.label_smoothing,
        max_length=config.max_length, precompute_ref_log_probs=True, bf16=use_bf16, fp16=False,
        activation_checkpointing=config.gradient_checkpointing, seed=config.seed, logging_steps=config.logging_steps,
        eval_strategy="steps" if eval_pairs else "no", eval_steps=config.eval_steps, save_strategy="no",
        report_to=[], disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
    )
    trainer = WeightedDPOTrainer(model=model, ref_model=reference, args=args, processing_class=tokenizer,
                                 train_dataset=Dataset.from_list(train_pairs),
                                 eval_dataset=Dataset.from_list(eval_pairs) if eval_pairs else None,
                                 callbacks=[metrics_callback(metrics_path)])
    zero = trainer.is_world_process_zero()
    report = {"train_pairs": len(train_pairs), "eval_pairs": len(eval_pairs), "left_out": left_out,
              "strength_rule": config.strength_rule, "loss_type": config.loss_type, "beta": config.beta,
              "bf16": use_bf16, **trained}
    if zero:
        emit("data", **report)
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    evaluation = None
    if eval_pairs:
        final = trainer.evaluate()  # the curves' last point
        evaluation = _held_out(trainer, eval_pairs, eval_strengths)
        evaluation["loss"] = final.get("eval_loss")
    summary = {"train_loss": result.training_loss, "steps": trainer.state.global_step, "seconds": round(seconds, 2),
               "pairs_per_second": round(len(train_pairs) * config.epochs / seconds, 2),
               "train_pairs": len(train_pairs), "left_out": left_out,
               "eval_accuracy": evaluation["accuracy"] if evaluation else None,
               "eval_margin": evaluation["margin"] if evaluation else None, "held_out": evaluation,
               "bf16": use_bf16}

    record = {"job": "dpo", "config": dataclasses.asdict(config), "seed": config.seed,
              "step": trainer.state.global_step, "metrics": summary, "eval": evaluation}
    if policy_save(trainer, out, record):
        (out / "eval.json").write_text(json.dumps(evaluation or {}, indent=2) + "\n")
        emit("done", **summary)
    return {"summary": summary, "eval": evaluation, "data": report}


def parse(argv: list[str]) -> DPOJobConfig:
    return parse_job(DPOJobConfig, argv, description=__doc__, required=("train", "base", "out"))


if __name__ == "__main__":
    main(parse(sys.argv[1:]))
