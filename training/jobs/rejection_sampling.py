"""Rejection-sampling fine-tuning, the Llama 2 way (LLAMA2.md, p. 13–15).

Pure Python + torch/transformers/TRL, no Django. Runnable alone:

    python -m training.jobs.rejection_sampling --prompts prompts.jsonl --endpoint http://127.0.0.1:8000/v1 \
        --helpfulness-rm var/checkpoints/rm-helpfulness --safety-rm var/checkpoints/rm-safety \
        --k 8 --temperature 1.2 --pool var/rounds/1/kept.jsonl --base var/checkpoints/sft --out var/rounds/2

For each prompt, K answers are sampled from the newest policy through its OpenAI-compatible
endpoint (one request per sample, each with its own seed: `transformers serve` ignores `n`).
Each answer is scored with Llama 2's combined reward: R_c is the safety RM's probability σ(r_s)
when the prompt is a safety prompt or σ(r_s) < 0.15, else the helpfulness RM's σ(r_h); samples of
one prompt are ranked by LOGIT(R_c) (not whitened: whitening over a batch does not change the
order within a prompt). The best answer per prompt is kept. With `--pool` (the kept.jsonl of
earlier rounds, as from V4 on in the paper) the pooled answers are scored again with the current
reward models and a prompt keeps the best of this round and the pool. Then the base checkpoint is
fine-tuned on the kept answers with the SFT job (same process, same settings flags).

Writes, into `--out`: samples.jsonl (every sample with its scores), kept.jsonl (one SFT row per
prompt, with its reward and the round it came from: the next round's `--pool`), gain.json (per
prompt, max − median reward of this round's K samples, and their mean: what rejection sampling
buys, Llama 2's Figure 7), the fine-tuned checkpoint, tandem_job.json and metrics.jsonl.
Events: `data`, `log` (sampling progress with phase "sampling", then the training steps),
`samples` (a few prompts with their best and worst answer), `done`.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import (
    bf16_wanted,
    emit,
    messages_of,
    parse_job,
    preview,
    read_jsonl,
    sample_then_train,
    score_conversations,
    setting,
    tokenizer_of,
)
from .rewards import SAFETY_THRESHOLD, combined_raw
from .sampling import in_flight, run_concurrently, sampler_for
from .sft import SFTJobConfig
from .sft import main as sft_main

_TEMPERATURE = r"(?:[01](?:\.\d{1,3})?|2(?:\.0{1,3})?)"
TEMPERATURES_PATTERN = rf"(?:{_TEMPERATURE}(?:\s*,\s*{_TEMPERATURE}){{0,6}})?"


@dataclass
class RejectionSamplingJobConfig:
    prompts: str = ""  # JSONL: {"messages": [...], "is_safety": bool} or {"prompt": "…"}, user turn last
    endpoint: str = ""  # OpenAI-compatible base URL of the newest policy, e.g. http://host:8000/v1
    model: str = ""  # the model name it serves; empty: the first one its /models lists
    api_key: str = "EMPTY"  # bearer token for the endpoint (prefer api_key_env: argv is visible to all)
    api_key_env: str = ""  # environment variable that holds the token (TANDEM_VARIANT_KEY_*); wins over api_key
    k: int = setting(4, "Samples per prompt (the paper sweeps 1–100).", low=1, high=100, label="K samples per prompt")
    temperature: float = setting(1.0, "Sampling temperature; retune each round (the paper's best at 10–100 samples "
                                      "was 1.2–1.3).", low=0.0, high=2.0)
    temperatures: str = setting("", "More temperatures to draw K samples per prompt at, comma separated (at most "
                                    "7, each 0–2; e.g. 0.8,1.2): each gets its reward curve (Llama 2's Figure 8), "
                                    "and every sample competes for the kept answer.", pattern=TEMPERATURES_PATTERN,
                                label="More temperatures")
    top_p: float = setting(1.0, "Nucleus sampling; 1 leaves the diversity to the temperature.", low=0.01, high=1.0)
    max_new_tokens: int = setting(1024, "New tokens per sample, at most.", low=1, high=8192)
    concurrency: int = 0  # requests in flight; 0: as suits the server (32 against vLLM, which batches them; 2 else)
    request_timeout: float = 300.0  # seconds a request may wait for its next chunk
    max_attempts: int = 3  # tries per request on transient errors (connection, timeout, 5xx, 429)
    helpfulness_rm: str = ""  # helpfulness reward model folder (at least one of the two RMs)
    safety_rm: str = ""  # safety reward model folder
    safety_threshold: float = 0.15  # R_c takes the safety RM below this σ(r_s) (the paper's 0.15)
    rm_max_length: int = 4096  # tokens of prompt + answer an RM reads; longer ones lose the prompt's start
    rm_batch_size: int = 8  # sequences per RM forward pass
    pool: list[str] = field(default_factory=list)  # kept.jsonl of earlier rounds (repeatable), re-scored
    keep_pool_only_prompts: bool = True  # pooled prompts not sampled this round keep their best pooled answer
    round: int = 0  # this round's number; 0: one more than the highest round in the pool (1 without a pool)
    preview_prompts: int = 5  # prompts shown in the `samples` event
    base: str = ""  # checkpoint fine-tuned on the kept answers
    out: str = ""  # folder for samples.jsonl, kept.jsonl, gain.json and the fine-tuned checkpoint
    distributed_timeout_s: int = 6 * 3600  # accelerate launch: how long other ranks wait for rank 0 to sample
    sft: SFTJobConfig = field(default_factory=SFTJobConfig)  # fine-tuning; its seed also seeds the samples


# Prompts, pool and rewards.

def normalise(messages, where: str) -> list[dict]:
    result = []
    for message in messages:
        if not (isinstance(message, dict) and isinstance(message.get("content"), str)
                and message.get("role")):
            raise ValueError(f"{where}: a message needs a role and text content, got {message!r}")
        result.append({"role": message["role"], "content": message["content"]})
    return result


def prompt_id(messages: list[dict]) -> str:
    return hashlib.sha1(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def read_prompts(path: str) -> tuple[list[dict], int]:
    """(prompts, duplicates skipped): each {"id", "messages", "is_safety", "risk_category"}, ending with a
    user turn (context distillation reads the same file)."""
    prompts, seen, duplicates = [], set(), 0
    for number, row in enumerate(read_jsonl(path), start=1):
        where = f"{path}:{number}"
        if "messages" in row:
            messages = normalise(row["messages"], where)
        elif "prompt" in row:
            messages = normalise(messages_of(row["prompt"], "user"), where)
        else:
            raise ValueError(f"{where}: neither 'messages' nor 'prompt'")
        if not messages or messages[-1]["role"] != "user":
            raise ValueError(f"{where}: a prompt ends with a user turn")
        key = prompt_id(messages)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        is_safety = bool(row.get("is_safety", row.get("focus") == "safety"))
        prompts.append({"id": key, "messages": messages, "is_safety": is_safety,
                        "risk_category": str(row.get("risk_category") or "")})
    return prompts, duplicates


def read_pool(paths: list[str]) -> list[dict]:
    """Kept rows of earlier rounds as candidates: {"prompt_id", "messages" (the prompt), "text", "round",
    "is_safety", "pool_reward" (its reward under that round's RMs)}."""
    pooled = []
    for path in paths:
        for number, row in enumerate(read_jsonl(path, required=("messages",)), start=1):
            where = f"{path}:{number}"
            messages = normalise(row["messages"], where)
            if len(messages) < 2 or messages[-1]["role"] != "assistant":
                raise ValueError(f"{where}: a kept row ends with the assistant's answer")
            prompt = messages[:-1]
            pooled.append({"prompt_id": prompt_id(prompt), "messages": prompt,
                           "text": messages[-1]["content"], "round": int(row.get("round") or 0),
                           "is_safety": bool(row.get("is_safety", False)), "pool_reward": row.get("reward"),
                           "source": "pool"})
    return pooled


def sample_reward(*, helpfulness: float | None, safety: float | None, is_safety: bool,
                  threshold: float = SAFETY_THRESHOLD) -> float:
    """LOGIT(R_c) of one answer from the RMs' raw scores: the value samples of one prompt are ranked by."""
    return combined_raw(helpfulness=helpfulness, safety=safety, is_safety_prompt=is_safety, threshold=threshold)


def gain_report(rewards_per_prompt: dict[str, list[float]], *, k: int) -> dict:
    """Per prompt the max and median reward of this round's samples and their difference; the means."""
    rows = []
    for key, rewards in rewards_per_prompt.items():
        if rewards:
            best, middle = max(rewards), statistics.median(rewards)
            rows.append({"prompt_id": key, "samples": len(rewards), "max": best, "median": middle,
                         "gain": best - middle})

    def mean(name):
        return statistics.fmean(row[name] for row in rows) if rows else None

    return {"k": k, "prompts": len(rows), "mean_gain": mean("gain"), "mean_max": mean("max"),
            "mean_median": mean("median"), "per_prompt": rows}


def reward_model_scores(path: str, conversations: list[list[dict]], *, max_length: int,
                        batch_size: int) -> list[float]:
    """Raw scalar scores of one reward model for whole conversations (the last message is scored)."""
    import gc

    import torch
    from transformers import AutoModelForSequenceClassification

    cuda = torch.cuda.is_available()
    tokenizer = tokenizer_of(path)
    dtype = torch.bfloat16 if bf16_wanted() else torch.float32
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.to("cuda" if cuda else "cpu").eval()
    # Similar lengths together: less padding per batch.
    order = sorted(range(len(conversations)), key=lambda i: sum(len(m["content"]) for m in conversations[i]))
    scores = score_conversations(model, tokenizer, [conversations[i] for i in order], max_length=max_length,
                                 batch_size=batch_size)
    result = [0.0] * len(conversations)
    for position, index in enumerate(order):
        result[index] = scores[position]
    del model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def temperatures_of(config: RejectionSamplingJobConfig) -> list[float]:
    """The run's temperature first, then the further ones it names (each once)."""
    found = [config.temperature]
    for part in filter(None, (item.strip() for item in config.temperatures.split(","))):
        if float(part) not in found:
            found.append(float(part))
    return found


def reward_curves(rewards_per_prompt: dict[str, list[float]]) -> dict:
    """Llama 2's Figures 7 and 8: for N = 1 … K, the max and the median reward among the first N
    samples of each prompt (in the order they were drawn), averaged over the prompts that have N."""
    curve = {"n": [], "max": [], "median": [], "prompts": []}
    for n in range(1, max((len(r) for r in rewards_per_prompt.values()), default=0) + 1):
        firsts = [rewards[:n] for rewards in rewards_per_prompt.values() if len(rewards) >= n]
        curve["n"].append(n)
        curve["max"].append(statistics.fmean(max(f) for f in firsts))
        curve["median"].append(statistics.fmean(statistics.median(f) for f in firsts))
        curve["prompts"].append(len(firsts))
    return curve


def sample_and_select(config: RejectionSamplingJobConfig, out: Path) -> dict:
    """Sampling, scoring and selection: writes samples.jsonl, kept.jsonl and gain.json, returns a summary."""
    prompts, duplicates = read_prompts(config.prompts)
    pooled = read_pool(config.pool)
    round_number = config.round or (1 + max((row["round"] for row in pooled), default=0))
    by_id = {p["id"]: p for p in prompts}
    pool_only = {row["prompt_id"] for row in pooled} - set(by_id)
    if not config.keep_pool_only_prompts:
        pooled = [row for row in pooled if row["prompt_id"] in by_id]
    for row in pooled:  # this round's prompt file says which prompts are safety prompts
        if row["prompt_id"] in by_id:
            row["is_safety"] = by_id[row["prompt_id"]]["is_safety"]
    sampler = sampler_for(config)
    concurrency = in_flight(config.concurrency, sampler.server)
    metrics_path = out / "metrics.jsonl"
    emit("data", phase="sampling", round=round_number, prompts=len(prompts), duplicate_prompts=duplicates,
         k=config.k, samples_to_draw=len(prompts) * config.k, pool_rows=len(pooled),
         pool_prompts_matched=len({row["prompt_id"] for row in pooled} & set(by_id)),
         pool_only_prompts=len(pool_only) if config.keep_pool_only_prompts else 0, model=sampler.model,
         server=sampler.server or "other", concurrency=concurrency, temperature=config.temperature,
         top_p=config.top_p, max_new_tokens=config.max_new_tokens,
         helpfulness_rm=config.helpfulness_rm or None, safety_rm=config.safety_rm or None)

    # Seeds differ per sample, per temperature and per round; the same config draws the same seeds again
    # (the run's own temperature keeps the seeds it had before further temperatures existed).
    seed0 = config.sft.seed + 1_000_003 * round_number
    temperatures = temperatures_of(config)
    jobs = [(t, i, j) for t in range(len(temperatures)) for i in range(len(prompts)) for j in range(config.k)]
    tasks = [lambda t=t, i=i, j=j: sampler(prompts[i]["messages"], temperature=temperatures[t],
                                           seed=seed0 + (t * len(prompts) + i) * config.k + j) for t, i, j in jobs]
    samples: list[dict] = [None] * len(jobs)
    started = time.perf_counter()
    for index, result in run_concurrently(tasks, concurrency=concurrency, phase="sampling",
                                          metrics_path=metrics_path):
        t, i, j = jobs[index]
        samples[index] = {"prompt_id": prompts[i]["id"], "messages": prompts[i]["messages"], "sample": j,
                          "temperature": temperatures[t], "round": round_number,
                          "is_safety": prompts[i]["is_safety"], "source": "sample", **result}
    sampling_seconds = time.perf_counter() - started
    drawn = [s for s in samples if s["error"] is None]
    if not drawn:
        first = next((s["error"] for s in samples), "no prompts")
        raise RuntimeError(f"no sample could be drawn from {config.endpoint}: {first}")

    # Score this round's answers and the pooled ones with the current reward models.
    candidates = drawn + pooled
    conversations = [c["messages"] + [{"role": "assistant", "content": c["text"]}] for c in candidates]
    started = time.perf_counter()
    scores = {}
    for name, path in (("helpfulness", config.helpfulness_rm), ("safety", config.safety_rm)):
        if path:
            scores[name] = reward_model_scores(path, conversations, max_length=config.rm_max_length,
                                               batch_size=config.rm_batch_size)
    scoring_seconds = time.perf_counter() - started
    for index, candidate in enumerate(candidates):
        candidate["helpfulness"] = scores["helpfulness"][index] if "helpfulness" in scores else None
        candidate["safety"] = scores["safety"][index] if "safety" in scores else None
        candidate["reward"] = sample_reward(helpfulness=candidate["helpfulness"], safety=candidate["safety"],
                                            is_safety=candidate["is_safety"],
                                            threshold=config.safety_threshold)

    # The best per prompt; on a tie this round's answer (the newer model's) wins over a pooled one.
    groups: dict[str, list[dict]] = {}
    for sample in drawn:
        groups.setdefault(sample["prompt_id"], []).append(sample)
    for row in pooled:
        groups.setdefault(row["prompt_id"], []).append(row)
    kept = []
    for key, group in groups.items():
        best = max(group, key=lambda c: c["reward"])
        best["kept"] = True
        kept.append({"messages": best["messages"] + [{"role": "assistant", "content": best["text"]}],
                     "prompt_id": key, "reward": best["reward"], "round": best["round"],
                     "source": best["source"], "is_safety": best["is_safety"],
                     "helpfulness": best["helpfulness"], "safety": best["safety"]})
    gain = gain_report({p["id"]: [s["reward"] for s in groups.get(p["id"], []) if s["source"] == "sample"]
                        for p in prompts}, k=config.k)
    gain["curves"] = {f"{temperature:g}": reward_curves({
        p["id"]: [s["reward"] for s in sorted((c for c in groups.get(p["id"], []) if c["source"] == "sample"
                                               and c["temperature"] == temperature), key=lambda c: c["sample"])]
        for p in prompts})
        for temperature in temperatures}

    with open(out / "samples.jsonl", "w", encoding="utf-8") as handle:
        for sample in samples:
            row = {key: value for key, value in sample.items() if key != "messages"}
            row = {"prompt": sample["messages"][-1]["content"], "kept": sample.get("kept", False), **row}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(out / "kept.jsonl", "w", encoding="utf-8") as handle:
        for row in kept:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "gain.json").write_text(json.dumps(gain, indent=2) + "\n")

    shown = []
    for prompt in prompts[: config.preview_prompts]:
        group = sorted(groups.get(prompt["id"], []), key=lambda c: c["reward"])
        if group:
            this_round = [c["reward"] for c in group if c["source"] == "sample"]
            shown.append({"prompt": preview(prompt["messages"][-1]["content"]),
                          "is_safety": prompt["is_safety"],
                          "best": preview(group[-1]["text"]), "best_reward": group[-1]["reward"],
                          "best_from": group[-1]["source"],
                          "worst": preview(group[0]["text"]), "worst_reward": group[0]["reward"],
                          "median_reward": statistics.median(this_round) if this_round else None})
    emit("samples", rows=shown)

    return {"round": round_number, "prompts": len(prompts), "k": config.k, "samples": len(drawn),
            "failed_samples": len(samples) - len(drawn),
            "prompts_without_samples": sum(1 for p in prompts if not any(
                c["source"] == "sample" for c in groups.get(p["id"], []))),
            "kept": len(kept), "kept_from_pool": sum(1 for row in kept if row["source"] == "pool"),
            "mean_kept_reward": statistics.fmean(row["reward"] for row in kept),
            "mean_gain": gain["mean_gain"], "mean_max_reward": gain["mean_max"],
            "mean_median_reward": gain["mean_median"], "sampling_seconds": round(sampling_seconds, 2),
            "scoring_seconds": round(scoring_seconds, 2), "temperature": config.temperature,
            "temperatures": temperatures, "curves": gain["curves"]}


def main(config: RejectionSamplingJobConfig) -> dict:
    if not (config.helpfulness_rm or config.safety_rm):
        raise ValueError("rejection sampling needs --helpfulness-rm and/or --safety-rm")
    for path in (config.helpfulness_rm, config.safety_rm):
        if path and not Path(path).is_dir():
            raise ValueError(f"{path}: no reward model folder there")
    if config.k < 1:
        raise ValueError("--k must be at least 1")
    out = Path(config.out)
    summary, trained = sample_then_train(config, job="rejection_sampling", train_file="kept.jsonl",
                                         sample=sample_and_select, fine_tune=sft_main)
    return {"summary": summary, "train": trained,
            "gain": json.loads((out / "gain.json").read_text()) if (out / "gain.json").is_file() else None}


def parse(argv: list[str]) -> RejectionSamplingJobConfig:
    return parse_job(RejectionSamplingJobConfig, argv, description=__doc__,
                     required=("prompts", "endpoint", "base", "out"), nested={"sft": SFTJobConfig})


if __name__ == "__main__":
    main(parse(sys.argv[1:]))
