"""What every training job shares: JSON-line events on stdout, JSONL input, reward-model scoring."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time


def emit(event: str, **data) -> None:
    """One JSON line on stdout: what the launching task reads into the run."""
    print(json.dumps({"event": event, "time": round(time.time(), 3), **data}), flush=True)


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
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a yes/no value: {text!r}")


def add_arguments(parser: argparse.ArgumentParser, cls, *, prefix: str = "", skip=(), required=()) -> None:
    """One `--flag value` per field of a config dataclass (bools take a value too, as the launcher
    passes `--key value` for every setting); list fields repeat (`--pool a --pool b`)."""
    kinds = {"str": str, "int": int, "float": float, "bool": _boolean}
    for item in dataclasses.fields(cls):
        name = item.type if isinstance(item.type, str) else getattr(item.type, "__name__", "")
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
