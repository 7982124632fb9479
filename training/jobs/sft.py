"""Supervised fine-tuning on demonstrations, the Llama 2 way (LLAMA2.md, p. 9).

Pure Python + torch/transformers/TRL, no Django. Runnable alone:

    python -m training.jobs.sft --train demos.jsonl [--eval held_out.jsonl] \
        --base var/models/smollm2-135m-instruct --out var/checkpoints/sft
    accelerate launch -m training.jobs.sft --train … --base … --out …

Input: one conversation per line, `{"messages": [...]}`, ending with the assistant answer to learn
(or TRL's prompt–completion form, `{"prompt": ..., "completion": ...}`). Each row becomes a
prompt (every message but the last) and a completion (the last, assistant, message); TRL's
SFTTrainer then masks every prompt token (label −100), so the loss is on the answer only, earlier
assistant turns included in the mask. Defaults are the paper's: initial LR 2e-5 with cosine decay,
weight decay 0.1, 64 examples per optimiser step, sequences of 4096 tokens, 2 epochs.

No example is dropped: a sequence longer than `max_length` loses the start of its prompt (and,
only when the answer alone does not fit, the end of its answer); both counts are in the `data`
event. TRL's own truncation is not used, because it keeps the start of a sequence (cutting the
answer) and then drops the examples it left without answer tokens.

Writes, into `--out`: the checkpoint (safetensors, tokenizer, and a `generation_config.json` with
`do_sample: true`, so that `transformers serve` samples from it), `tandem_job.json` (config, seed,
step, metrics) and `metrics.jsonl`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import (
    Outer,
    bf16_wanted,
    emit,
    messages_of,
    metrics_callback,
    parse_job,
    policy_save,
    read_jsonl,
    setting,
    tokenizer_of,
    train_top_layers,
)


@dataclass
class SFTJobConfig:
    train: str = ""  # JSONL of demonstrations: {"messages": [...]} ending with the answer to learn
    eval: str = ""  # JSONL of held-out demonstrations (same form); empty: no evaluation
    base: str = ""  # checkpoint to fine-tune
    out: str = ""  # folder for the checkpoint, tandem_job.json and metrics.jsonl
    learning_rate: float = setting(2e-5, "Initial learning rate (the paper's 2e-5 for SFT).", low=1e-9, high=1e-2)
    lr_scheduler: str = "cosine"  # cosine decay to 0 (the paper's); any transformers scheduler name
    warmup_ratio: float = 0.0  # share of the steps spent warming up; the paper names none
    epochs: float = setting(2.0, "Passes over the examples (the paper's 2).", low=0.01, high=20)
    per_device_batch_size: int = setting(4, "Examples per forward pass on one device.", low=1, high=1024)
    gradient_accumulation_steps: int = setting(16, "Forward passes per optimiser step (4 × 16 = the paper's 64 "
                                                   "examples).", low=1, high=4096)
    max_length: int = setting(4096, "Tokens of prompt and answer; a longer one loses the start of its prompt.",
                              low=16, high=32768)
    weight_decay: float = 0.1  # the paper's
    adam_beta1: float = 0.9  # AdamW as in Llama 2's pre-training (the SFT section names no optimiser settings)
    adam_beta2: float = 0.95  # (TRL's default 0.999)
    adam_epsilon: float = 1e-5  # (TRL's default 1e-8)
    max_grad_norm: float = 1.0  # gradient clipping
    bf16: str = "auto"  # auto (when the hardware has it) | yes | no; weights stay float32, compute in bf16
    gradient_checkpointing: bool = setting(True, "Recompute activations to save memory (4096-token sequences); "
                                                 "off for tiny models.")
    trainable_layers: int = setting(0, "Fine-tune only the top N transformer blocks (and an untied head); 0: all.",
                                    low=0, high=1024)
    seed: int = setting(0, "Seeds data order and sampling; the same seed gives the same run.", low=0, high=2**31 - 1)
    logging_steps: int = 1  # optimiser steps between `log` events
    extra: dict = field(default_factory=dict)  # free-form notes carried into the checkpoint


def prompt_completion(row: dict, where: str = "") -> dict:
    """A demonstration as TRL's conversational prompt–completion pair: prompt = every message but
    the last, completion = the last one, which must be the assistant's."""
    if "messages" in row:
        messages = [_message(m, where) for m in row["messages"]]
        if len(messages) < 2 or messages[-1]["role"] != "assistant":
            raise ValueError(f"{where}: a demonstration needs a prompt and ends with the assistant's answer")
        return {"prompt": messages[:-1], "completion": messages[-1:]}
    if "prompt" in row and "completion" in row:
        prompt = [_message(m, where) for m in messages_of(row["prompt"], "user")]
        completion = [_message(m, where) for m in messages_of(row["completion"], "assistant")]
        if not prompt or [m["role"] for m in completion] != ["assistant"]:
            raise ValueError(f"{where}: a demonstration needs a prompt and one assistant answer")
        return {"prompt": prompt, "completion": completion}
    raise ValueError(f"{where}: neither 'messages' nor 'prompt' and 'completion'")


def _message(message: dict, where: str) -> dict:
    if not (isinstance(message, dict) and isinstance(message.get("content"), str) and message.get("role")):
        raise ValueError(f"{where}: a message needs a role and text content, got {message!r}")
    return {"role": message["role"], "content": message["content"]}


def read_demonstrations(path: str) -> list[dict]:
    rows = read_jsonl(path)
    return [prompt_completion(row, f"{path}:{number}") for number, row in enumerate(rows, start=1)]


def fit_to_length(input_ids: list[int], labels: list[int], max_length: int) -> tuple[list, list, str]:
    """Cut a tokenized example to max_length without losing it: drop prompt tokens from the left;
    only when the answer alone does not fit, keep the last quarter-window of the prompt and the
    start of the answer. Returns (input_ids, labels, "" | "prompt" | "answer")."""
    if len(input_ids) <= max_length:
        return input_ids, labels, ""
    prompt_length = next((i for i, label in enumerate(labels) if label != -100), len(labels))
    answer_length = len(input_ids) - prompt_length
    if answer_length < max_length:
        return input_ids[-max_length:], labels[-max_length:], "prompt"
    keep_prompt = min(prompt_length, max_length // 4)
    start = prompt_length - keep_prompt
    end = prompt_length + max_length - keep_prompt
    return input_ids[start:end], labels[start:end], "answer"


def _fit_dataset(dataset, max_length: int) -> tuple:
    """The dataset after fit_to_length on every example, and what that did: {"prompt": prompts cut,
    "answer": answers cut, "tokens": all tokens, "answer_tokens": tokens with a label}."""
    def fit(example):
        ids, labels, cut = fit_to_length(example["input_ids"], example["labels"], max_length)
        return {"input_ids": ids, "labels": labels, "cut": cut, "length": len(ids),
                "answer_length": sum(1 for label in labels if label != -100)}

    dataset = dataset.map(fit, desc="Fitting to max_length")
    cuts = list(dataset["cut"])
    counts = {"prompt": cuts.count("prompt"), "answer": cuts.count("answer"),
              "tokens": sum(dataset["length"]), "answer_tokens": sum(dataset["answer_length"])}
    return dataset.remove_columns(["cut", "length", "answer_length"]), counts


def build_trainer(config: SFTJobConfig, *, callbacks=()):
    """The SFTTrainer with its prepared, length-fitted datasets, and a report on the data."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(config.seed)
    tokenizer = tokenizer_of(config.base)
    train_rows = read_demonstrations(config.train)
    eval_rows = read_demonstrations(config.eval) if config.eval else []
    if not train_rows:
        raise ValueError(f"{config.train}: no demonstrations")

    use_bf16 = bf16_wanted(config.bf16)
    # float32 master weights under bf16 autocast: at LR 2e-5 most updates are below bf16's resolution.
    model = AutoModelForCausalLM.from_pretrained(config.base, dtype=torch.float32)
    trained = train_top_layers(model, config.trainable_layers)
    args = SFTConfig(
        output_dir=str(Path(config.out) / "trainer"), learning_rate=config.learning_rate,
        num_train_epochs=config.epochs, per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio, weight_decay=config.weight_decay, adam_beta1=config.adam_beta1,
        adam_beta2=config.adam_beta2, adam_epsilon=config.adam_epsilon, max_grad_norm=config.max_grad_norm,
        bf16=use_bf16, fp16=False, activation_checkpointing=config.gradient_checkpointing, seed=config.seed,
        logging_steps=config.logging_steps, save_strategy="no", eval_strategy="epoch" if eval_rows else "no",
        report_to=[], disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
        completion_only_loss=True,
        max_length=None,  # TRL would keep the start and drop what is left without answer tokens; fitted below
    )
    trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer,
                         train_dataset=Dataset.from_list(train_rows),
                         eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
                         callbacks=list(callbacks))
    trainer.train_dataset, fitted = _fit_dataset(trainer.train_dataset, config.max_length)
    if len(trainer.train_dataset) != len(train_rows):
        raise RuntimeError(f"TRL kept {len(trainer.train_dataset)} of {len(train_rows)} demonstrations")
    eval_cut = 0
    if eval_rows:
        trainer.eval_dataset, eval_fitted = _fit_dataset(trainer.eval_dataset, config.max_length)
        eval_cut = eval_fitted["prompt"] + eval_fitted["answer"]
    report = {"train_examples": len(train_rows), "eval_examples": len(eval_rows),
              "truncated": fitted["prompt"], "answer_truncated": fitted["answer"], "eval_truncated": eval_cut,
              "train_tokens": fitted["tokens"], "answer_tokens": fitted["answer_tokens"],
              "max_length": config.max_length, "bf16": use_bf16, **trained}
    return trainer, report


def main(config: SFTJobConfig, *, outer: Outer | None = None) -> dict:
    import torch

    out = Path(config.out)
    metrics_path = out / "metrics.jsonl"

    trainer, report = build_trainer(config, callbacks=[metrics_callback(metrics_path, phase="train")])
    zero = trainer.is_world_process_zero()
    if zero:
        out.mkdir(parents=True, exist_ok=True)
        if outer is None:
            metrics_path.write_text("")  # a rerun into the same folder starts a fresh record
        batch = config.per_device_batch_size * config.gradient_accumulation_steps * trainer.args.world_size
        emit("data", **{**(outer.metrics if outer else {}), **report, "batch_size": batch})

    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    # eval_strategy="epoch" evaluated after the last epoch: its loss is the final one.
    evaluation = next((entry for entry in reversed(trainer.state.log_history) if "eval_loss" in entry), None)
    summary = {"train_loss": result.training_loss, "steps": trainer.state.global_step,
               "seconds": round(seconds, 2),
               "examples_per_second": round(report["train_examples"] * config.epochs / seconds, 2),
               "tokens_per_second": round(report["train_tokens"] * config.epochs / seconds, 1),
               "train_examples": report["train_examples"], "truncated": report["truncated"],
               "answer_truncated": report["answer_truncated"], "bf16": report["bf16"],
               "eval_loss": evaluation["eval_loss"] if evaluation else None}

    record = {"job": outer.job if outer else "sft", "config": outer.config if outer else dataclasses.asdict(config),
              "seed": config.seed, "step": trainer.state.global_step,
              "metrics": {**(outer.metrics if outer else {}), **summary}}
    if policy_save(trainer, out, record) and outer is None:
        emit("done", **summary)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"summary": summary, "data": report}


# Command lines, shared by the jobs that nest an SFTJobConfig.

def parse(argv: list[str]) -> SFTJobConfig:
    return parse_job(SFTJobConfig, argv, description=__doc__, required=("train", "base", "out"))


if __name__ == "__main__":
    main(parse(sys.argv[1:]))
