"""Ghost Attention (GAtt), the Llama 2 way (LLAMA2.md, p. 16–17).

Pure Python + torch/transformers/TRL, no Django. Runnable alone:

    python -m training.jobs.gatt --instructions instructions.txt --dialogues dialogues.jsonl \
        --endpoint http://127.0.0.1:8000/v1 --base var/checkpoints/rlhf-v3 --out var/checkpoints/gatt

An instruction (a hobby, a language, a public figure, or a combination) is appended to every user
turn of a synthetic multi-turn dialogue, and the latest model answers turn by turn through its
OpenAI-compatible endpoint. For training the instruction is kept in the first user turn only and
the loss is zero on every token of the earlier turns, assistant turns included: each dialogue
becomes one prompt–completion example whose completion is the last answer (the SFT job masks the
whole prompt). Then the base checkpoint is fine-tuned on them with the SFT job (same process).

Inputs: `--instructions`, one instruction per line (blank lines and lines starting with `#` are
skipped); `--dialogues`, JSONL rows `{"user_turns": [...]}` (an `"instruction"` in a row is used
instead of a drawn one). Each dialogue draws its instruction at random (seeded).

Writes, into `--out`: gatt_train.jsonl (prompt, completion, instruction, and the sampled dialogue
as the model saw it), the fine-tuned checkpoint, tandem_job.json and metrics.jsonl.
Events: `data`, `log` (sampling progress with phase "sampling", then the training steps),
`samples` (a few dialogues), `done`.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import emit, parse_job, read_jsonl, sample_then_train, setting
from .sampling import in_flight, run_concurrently, sampler_for
from .sft import SFTJobConfig
from .sft import main as sft_main

SEPARATOR = "\n\n"


@dataclass
class GAttJobConfig:
    instructions: str = ""  # text file, one instruction per line
    dialogues: str = ""  # JSONL of synthetic dialogues: {"user_turns": [...]}, optionally an "instruction"
    endpoint: str = ""  # OpenAI-compatible base URL of the latest model, e.g. http://host:8000/v1
    model: str = ""  # the model name it serves; empty: the first one its /models lists
    api_key: str = "EMPTY"  # bearer token for the endpoint (prefer api_key_env: argv is visible to all)
    api_key_env: str = ""  # environment variable that holds the token (TANDEM_VARIANT_KEY_*); wins over api_key
    temperature: float = setting(0.7, "Sampling temperature of the answers (kept as sampled, not reranked: a "
                                      "moderate one).", low=0.0, high=2.0)
    top_p: float = 0.9  # nucleus sampling of the answers
    max_new_tokens: int = setting(512, "New tokens per answer, at most.", low=1, high=8192)
    concurrency: int = 0  # dialogues sampled at once (turns of one go in order); 0: 32 against vLLM, 2 else
    request_timeout: float = 300.0  # seconds a request may wait for its next chunk
    max_attempts: int = 3  # tries per request on transient errors (connection, timeout, 5xx, 429)
    preview_dialogues: int = 3  # dialogues shown in the `samples` event
    base: str = ""  # checkpoint fine-tuned on the GAtt examples
    out: str = ""  # folder for gatt_train.jsonl and the fine-tuned checkpoint
    distributed_timeout_s: int = 6 * 3600  # accelerate launch: how long other ranks wait for rank 0 to sample
    sft: SFTJobConfig = field(default_factory=SFTJobConfig)  # fine-tuning; its seed also draws instructions


def with_instruction(turn: str, instruction: str, *, separator: str = SEPARATOR) -> str:
    return f"{turn}{separator}{instruction}"


def sampling_dialogue(instruction: str, user_turns: list[str], answers: list[str] = (), *,
                      separator: str = SEPARATOR) -> list[dict]:
    """What the model sees while sampling: every user turn with the instruction appended,
    interleaved with the answers so far. With k answers it ends at user turn k + 1 (the one to
    answer next); with an answer to every turn it is the whole dialogue."""
    if len(answers) > len(user_turns):
        raise ValueError("more answers than user turns")
    messages = []
    for index, turn in enumerate(user_turns[: len(answers) + 1]):
        messages.append({"role": "user", "content": with_instruction(turn, instruction, separator=separator)})
        if index < len(answers):
            messages.append({"role": "assistant", "content": answers[index]})
    return messages


def training_example(instruction: str, user_turns: list[str], answers: list[str], *,
                     separator: str = SEPARATOR) -> dict:
    """The training form: the instruction only in the first user turn; the prompt is everything
    before the last answer and the completion that answer, so the loss is zero on earlier turns."""
    if not user_turns or len(answers) != len(user_turns):
        raise ValueError("one answer per user turn is needed")
    messages = []
    for index, (turn, answer) in enumerate(zip(user_turns, answers)):
        content = with_instruction(turn, instruction, separator=separator) if index == 0 else turn
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def read_instructions(path: str) -> list[str]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    instructions = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not instructions:
        raise ValueError(f"{path}: no instructions")
    return instructions


def read_dialogues(path: str) -> list[dict]:
    dialogues = []
    for number, row in enumerate(read_jsonl(path, required=("user_turns",)), start=1):
        turns = row["user_turns"]
        if not turns or not all(isinstance(turn, str) and turn.strip() for turn in turns):
            raise ValueError(f"{path}:{number}: user_turns must be a list of non-empty texts")
        dialogues.append({"user_turns": list(turns), "instruction": row.get("instruction")})
    return dialogues


def sample_dialogues(config: GAttJobConfig, out: Path) -> dict:
    """Sample every dialogue turn by turn, write gatt_train.jsonl, return the summary."""
    instructions = read_instructions(config.instructions)
    dialogues = read_dialogues(config.dialogues)
    rng = random.Random(config.sft.seed)
    for dialogue in dialogues:
        drawn = rng.choice(instructions)  # drawn for every row, so an explicit one does not shift the others
        dialogue["instruction"] = dialogue["instruction"] or drawn
    sampler = sampler_for(config)
    concurrency = in_flight(config.concurrency, sampler.server)
    emit("data", phase="sampling", dialogues=len(dialogues), instructions=len(instructions),
         turns=sum(len(d["user_turns"]) for d in dialogues), model=sampler.model,
         server=sampler.server or "other", concurrency=concurrency,
         temperature=config.temperature, top_p=config.top_p, max_new_tokens=config.max_new_tokens)

    def converse(index: int) -> dict:
        dialogue, answers = dialogues[index], []
        for turn in range(len(dialogue["user_turns"])):
            messages = sampling_dialogue(dialogue["instruction"], dialogue["user_turns"], answers)
            result = sampler(messages, seed=config.sft.seed * 1_000_003 + index * 1000 + turn)
            if result["error"]:
                return {"error": f"turn {turn + 1}: {result['error']}", "answers": answers}
            answers.append(result["text"])
        return {"error": None, "answers": answers}

    tasks = [lambda index=index: converse(index) for index in range(len(dialogues))]
    results: list[dict] = [None] * len(dialogues)
    started = time.perf_counter()
    for index, result in run_concurrently(tasks, concurrency=concurrency, phase="sampling",
                                          metrics_path=out / "metrics.jsonl", unit="dialogues"):
        results[index] = result
    seconds = time.perf_counter() - started

    rows, failures = [], []
    for index, (dialogue, result) in enumerate(zip(dialogues, results)):
        if result["error"]:
            failures.append({"dialogue": index, "error": result["error"]})
            continue
        instruction, turns, answers = dialogue["instruction"], dialogue["user_turns"], result["answers"]
        rows.append({**training_example(instruction, turns, answers), "instruction": instruction,
                     "dialogue": index, "sampled": sampling_dialogue(instruction, turns, answers)})
    if not rows:
        raise RuntimeError(f"no dialogue could be sampled from {config.endpoint}: "
                           f"{failures[0]['error'] if failures else 'no dialogues'}")
    with open(out / "gatt_train.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    if failures:
        (out / "gatt_failures.json").write_text(json.dumps(failures, indent=2) + "\n")
    emit("samples", rows=[{"instruction": row["instruction"], "first_turn": row["prompt"][0]["content"],
                           "last_turn": row["prompt"][-1]["content"],
                           "last_answer": row["completion"][0]["content"],
                           "turns": len(dialogues[row["dialogue"]]["user_turns"])}
                          for row in rows[: config.preview_dialogues]])
    return {"dialogues": len(dialogues), "examples": len(rows), "failed_dialogues": len(failures),
            "instructions": len(instructions), "sampling_seconds": round(seconds, 2),
            "temperature": config.temperature}


def main(config: GAttJobConfig) -> dict:
    summary, trained = sample_then_train(config, job="gatt", train_file="gatt_train.jsonl",
                                         sample=sample_dialogues, fine_tune=sft_main)
    return {"summary": summary, "train": trained}


def parse(argv: list[str]) -> GAttJobConfig:
    return parse_job(GAttJobConfig, argv, description=__doc__,
                     required=("instructions", "dialogues", "endpoint", "base", "out"), nested={"sft": SFTJobConfig})


if __name__ == "__main__":
    main(parse(sys.argv[1:]))
