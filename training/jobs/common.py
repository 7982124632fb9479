"""What every training job shares: its settings and flags, JSON-line events on stdout, JSONL input,
the tokenizer and precision of a checkpoint, reward-model scoring, and sample-then-train (rank 0
samples, every rank fine-tunes)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from core.values import yes_no

# --- Settings: a job's config dataclass owns them -------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setting:
    """What a researcher may choose at launch, as the job's config field declares it: its help text
    and its bounds (numbers) or choices. The dashboard's form, the API's serializer, the command and
    the launch's validator are all derived from these (training/job_settings.py)."""

    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    label: str = ""
    pattern: str = ""  # a text setting's whole value must match it (a regular expression)


def setting(default: Any, help: str, *, low: float | None = None, high: float | None = None,
            choices: tuple[str, ...] = (), label: str = "", pattern: str = "") -> Any:
    """A config field a researcher may set at launch (``dataclasses.field`` with its Setting)."""
    return dataclasses.field(default=default,
                             metadata={"setting": Setting(help, low, high, tuple(choices), label, pattern)})


def settings_of(cls) -> dict[str, tuple[type, Any, Setting]]:
    """name → (type, default, Setting) of the settings of a config dataclass, its nested configs'
    included under their own names (rejection sampling's `learning_rate` is its SFT's)."""
    found = {}
    for item in dataclasses.fields(cls):
        if dataclasses.is_dataclass(item.default_factory if item.default_factory is not dataclasses.MISSING else None):
            found.update(settings_of(item.default_factory))
        elif "setting" in item.metadata:
            kind = {"int": int, "float": float, "bool": bool, "str": str}[_type_name(item)]
            found[item.name] = (kind, item.default, item.metadata["setting"])
    return found


def _type_name(item: dataclasses.Field) -> str:
    return item.type if isinstance(item.type, str) else getattr(item.type, "__name__", "")


def parse_job(cls, argv: list[str], *, description: str, required: tuple[str, ...] = (),
              nested: dict[str, type] | None = None):
    """A job's config from its command line: one `--flag value` per field (add_arguments), and each
    nested config's fields under their plain names (``nested``: field name → its config class;
    its fields the outer config also has keep the outer one)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, cls, required=required, skip=tuple(nested or ()))
    outer = {item.name for item in dataclasses.fields(cls)}
    for name, inner in (nested or {}).items():
        add_arguments(parser, inner, prefix=f"{name}.", skip=("train", "eval", "base", "out", "extra", *outer))
    values = vars(parser.parse_args(argv))
    inner_values = {name: {key.split(".", 1)[1]: value for key, value in values.items() if key.startswith(f"{name}.")}
                    for name in (nested or {})}
    config = {key: value for key, value in values.items() if "." not in key}
    return cls(**config, **{name: inner(**inner_values[name]) for name, inner in (nested or {}).items()})


def emit(event: str, **data) -> None:
    """One JSON line on stdout: what the launching task reads into the run."""
    print(json.dumps({"event": event, "time": round(time.time(), 3), **data}), flush=True)


def metrics_callback(metrics_path: Path | str, **extra):
    """A Trainer callback that reports each `log` of the main process as a `log` event and appends
    it to ``metrics_path`` (``extra`` fields go into every record)."""
    from transformers import TrainerCallback

    class JsonLines(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and state.is_world_process_zero:
                record = {"step": state.global_step, "max_steps": state.max_steps, **extra, **logs}
                emit("log", **record)
                with open(metrics_path, "a") as handle:
                    handle.write(json.dumps(record) + "\n")

    return JsonLines()


def policy_save(trainer, out: Path, record: dict) -> bool:
    """Write a fine-tuned policy as Tandem serves it: weights with a generation config that samples
    (`transformers serve` and vLLM's defaults read it: without do_sample they would be greedy), its
    tokenizer, and `tandem_job.json` (``record``). Every rank takes part in the save (FSDP or ZeRO-3
    gather the shards); the main process writes and gets True."""
    trainer.model.generation_config.do_sample = True
    trainer.save_model(str(out))  # safetensors + generation_config.json
    if not trainer.is_world_process_zero():
        return False
    trainer.processing_class.save_pretrained(str(out))
    try:
        (out / "trainer").rmdir()  # the Trainer's output_dir, empty with save_strategy="no"
    except OSError:
        pass
    (out / "tandem_job.json").write_text(json.dumps(record, indent=2) + "\n")
    return True


def preview(text: str | None, limit: int = 400) -> str | None:
    """``text`` cut to ``limit`` characters with an ellipsis (the `samples` events' previews)."""
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"


def read_jsonl(path: str, *, required: tuple[str, ...] = ()) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            for key in required:
                if key not in row:
                    raise ValueError(f"{path}:{number}: no {key!r}")
            rows.append(row)
    return rows


def messages_of(value, role: str) -> list[dict]:
    return [{"role": role, "content": value}] if isinstance(value, str) else list(value)


def score_token_ids(model, sequences: list[list[int]], *, pad_id: int, batch_size: int = 8) -> list[float]:
    """A reward model's scalar score of each token sequence (left padded: the score is read at the
    last token, where a sequence-classification head reads it)."""
    import torch

    device = next(model.parameters()).device
    scores: list[float] = []
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            batch = sequences[start:start + batch_size]
            width = max(len(ids) for ids in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for i, ids in enumerate(batch):
                input_ids[i, width - len(ids):] = torch.tensor(ids)
                attention[i, width - len(ids):] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
            scores.extend(logits.squeeze(-1).float().cpu().tolist())
    return scores


def score_conversations(model, tokenizer, conversations: list[list[dict]], *, max_length: int,
                        batch_size: int = 8) -> list[float]:
    """Scores of whole conversations (the last message is the response being scored), each cut to
    its last max_length tokens."""
    sequences = []
    for conversation in conversations:
        ids = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=False)
        if hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        sequences.append(list(ids)[-max_length:])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return score_token_ids(model, sequences, pad_id=pad, batch_size=batch_size)


def _boolean(text: str) -> bool:
    try:
        return yes_no(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser, cls, *, prefix: str = "", skip=(), required=()) -> None:
    """One `--flag value` per field of a config dataclass (bools take a value too, as the launcher
    passes `--key value` for every setting); list fields repeat (`--pool a --pool b`)."""
    kinds = {"str": str, "int": int, "float": float, "bool": _boolean}
    for item in dataclasses.fields(cls):
        name = _type_name(item)
        if item.name in skip:
            continue
        flag = "--" + item.name.replace("_", "-")
        if name == "list[str]":
            parser.add_argument(flag, action="append", default=[], dest=prefix + item.name)
        elif name in kinds:
            parser.add_argument(flag, type=kinds[name], default=item.default, dest=prefix + item.name,
                                required=item.name in required)


def train_top_layers(model, layers: int) -> dict:
    """Freeze everything but the last `layers` transformer blocks, the final norm and an untied head
    (a reward model's scalar head; a causal LM's own output layer when it is not the input
    embedding). Backpropagation then stops at the lowest trained block, so a step costs about one
    forward pass plus `layers / depth` of a backward pass: what makes a CPU run of a 135M model
    minutes instead of an hour. 0 trains everything. Returns the counts for the `data` event."""
    total = sum(p.numel() for p in model.parameters())
    if layers <= 0:
        return {"trainable_layers": "all", "trainable_parameters": total, "parameters": total}
    body = model.base_model
    blocks = getattr(body, "layers", None) or getattr(body, "h", None)
    if blocks is None:
        raise ValueError(f"{type(model).__name__}: no list of transformer blocks to train the top {layers} of")
    if layers > len(blocks):
        raise ValueError(f"trainable_layers={layers}, but the model has {len(blocks)} blocks")
    embedding = {id(p) for p in body.get_input_embeddings().parameters()}
    in_body = {id(p) for p in body.parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    trained = [*blocks[-layers:], *(m for m in (getattr(body, "norm", None), getattr(body, "ln_f", None)) if m)]
    for module in trained:
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    for parameter in model.parameters():  # the head: outside the body and not the (tied) input embedding
        if id(parameter) not in in_body and id(parameter) not in embedding:
            parameter.requires_grad_(True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_layers": f"{layers} of {len(blocks)}", "trainable_parameters": trainable, "parameters": total}


# --- Checkpoints: tokenizer and precision -------------------------------------------------------


def tokenizer_of(path: str):
    """A checkpoint's tokenizer, padding with its end-of-sequence token where it names no pad token
    (Llama's and SmolLM2's do not)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def bf16_wanted(choice: str = "auto") -> bool:
    """A job's ``bf16`` setting: yes, no, or auto (where the hardware has it: a CUDA device with bf16)."""
    import torch

    if choice in ("yes", "no"):
        return choice == "yes"
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


# --- Sample, then train -------------------------------------------------------------------------


def distributed_state(timeout_s: int):
    """accelerate's PartialState under `accelerate launch` (several processes), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from datetime import timedelta

    import torch
    from accelerate import PartialState

    # cpu=True on a CPU-only box: without it accelerate sees no distributed setup and every rank is "main".
    return PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=timeout_s))


@dataclasses.dataclass
class Outer:
    """The job that calls SFT's `main` in-process (rejection sampling, GAtt): its name, config and
    results go into tandem_job.json and the `data` event, and it emits the `done` event itself."""

    job: str
    config: dict
    metrics: dict = dataclasses.field(default_factory=dict)


def sample_then_train(config, *, job: str, train_file: str, sample, fine_tune, after=None) -> tuple[dict, dict]:
    """Rank 0 samples (``sample(config, out)`` writes ``train_file`` under ``out`` and returns its
    summary) while the other ranks wait; then every rank fine-tunes on it (``fine_tune``: SFT's
    ``main``, with ``config.sft`` from ``config.base`` into ``config.out``); rank 0 runs ``after(config)``
    on the new checkpoint when given (its dict joins the summary) and emits ``done``. Rejection
    sampling, Ghost Attention and context distillation are this with their own sampling."""
    out = Path(config.out)
    sft = dataclasses.replace(config.sft, train=str(out / train_file), eval="", base=config.base, out=str(out))
    config = dataclasses.replace(config, sft=sft)
    state = distributed_state(config.distributed_timeout_s)
    summary = {}
    if state is None or state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.jsonl").write_text("")
        summary = sample(config, out)
    if state is not None:
        state.wait_for_everyone()  # the other ranks train on what rank 0 wrote
    trained = fine_tune(sft, outer=Outer(job=job, config=dataclasses.asdict(config), metrics=summary))
    if state is None or state.is_main_process:
        if after is not None:  # its findings join the checkpoint's record too (the run's summary reads it)
            found = after(config)
            summary = {**summary, **found}
            record_path = out / "tandem_job.json"
            record = json.loads(record_path.read_text())
            record["metrics"] = {**record.get("metrics", {}), **found}
            record_path.write_text(json.dumps(record, indent=2) + "\n")
        emit("done", **{**summary, **trained["summary"]})
    return summary, trained
