"""Model-based evaluation of policy variants (Llama 2, Figure 11): each variant answers a held-out
prompt set through its OpenAI-compatible endpoint, the reward models score every answer, and for
every two variants the win rate of one against the other is the share of prompts where its answer
scores higher (a tie counts half), for the helpfulness and the safety RM separately.

Pure Python + torch/transformers + the openai SDK, no Django:

    python -m training.jobs.policy_eval --prompts prompts.jsonl \
        --variants '[{"name": "v1", "base_url": "http://…/v1", "model": "m"}, …]' \
        --helpfulness-rm rm-h/ --safety-rm rm-s/ --out eval/

Writes `samples.jsonl` (every answer with its scores), `eval.json` (win-rate matrices, mean
scores) and `tandem_job.json`; prints JSON-line events.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .common import emit, parse_job, read_jsonl, score_conversations, setting

RM_NAMES = ("helpfulness", "safety")


@dataclass
class PolicyEvalJobConfig:
    prompts: str = ""  # JSONL: {"messages": [...]} (or {"prompt": "…"}) per held-out prompt
    variants: str = ""  # JSON list of {"name", "base_url", "model", "api_key_env"}: two or more
    out: str = ""  # folder for eval.json, samples.jsonl, tandem_job.json
    helpfulness_rm: str = ""  # reward model folders; at least one
    safety_rm: str = ""
    temperature: float = setting(0.7, "Sampling temperature: one answer per prompt and variant.", low=0.0, high=2.0)
    top_p: float = 0.9
    max_new_tokens: int = setting(256, "New tokens per answer, at most.", low=1, high=8192)
    concurrency: int = 0  # requests in flight per variant; 0: 32 against vLLM (it batches them), 2 else
    max_length: int = 2048  # tokens of prompt + answer given to the reward models
    seed: int = setting(0, "Seeds data order and sampling; the same seed gives the same run.", low=0, high=2**31 - 1)
    timeout: float = 120.0  # seconds per request


def win_rates(scores: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """{a: {b: share of prompts where a's answer scores above b's, ties half}} for a ≠ b."""
    names = sorted(scores)
    table: dict[str, dict[str, float]] = {}
    for a in names:
        table[a] = {}
        for b in names:
            if a == b:
                continue
            pairs = [(x, y) for x, y in zip(scores[a], scores[b]) if x is not None and y is not None]
            wins = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in pairs)
            table[a][b] = round(wins / len(pairs), 4) if pairs else None
    return table


def _messages(row: dict) -> list[dict]:
    return row["messages"] if "messages" in row else [{"role": "user", "content": row["prompt"]}]


def sample_all(config: PolicyEvalJobConfig, variants: list[dict], prompts: list[list[dict]]) -> dict[str, list]:
    """One answer per prompt and variant (None when the endpoint refused it after its retries). The
    variants are sampled at once, each with as many requests in flight as its server takes well."""
    from .sampling import Sampler, endpoint_key, in_flight, served

    samplers = {}
    for variant in variants:
        api_key = endpoint_key(variant.get("api_key") or "EMPTY", variant.get("api_key_env") or "")
        try:
            _, server = served(variant["base_url"], api_key=api_key)
        except RuntimeError:  # its answers fail one by one below, and are counted so
            server = ""
        samplers[variant["name"]] = Sampler(
            endpoint=variant["base_url"], model=variant["model"], api_key=api_key, temperature=config.temperature,
            top_p=config.top_p, max_new_tokens=config.max_new_tokens, timeout=config.timeout, server=server)

    def answer_all(name: str) -> tuple[list, float]:
        sampler, started = samplers[name], time.perf_counter()
        with ThreadPoolExecutor(max_workers=in_flight(config.concurrency, sampler.server)) as pool:
            replies = list(pool.map(lambda item: sampler(item[1], seed=config.seed + item[0]), enumerate(prompts)))
        return [reply["text"] for reply in replies], time.perf_counter() - started

    answers: dict[str, list] = {}
    with ThreadPoolExecutor(max_workers=len(variants) or 1) as pool:
        for name, (texts, seconds) in zip(samplers, pool.map(answer_all, samplers), strict=True):
            answers[name] = texts
            sampler = samplers[name]
            emit("log", step=len(answers), max_steps=len(variants), variant=name, failed=sum(a is None for a in texts),
                 server=sampler.server or "other", concurrency=in_flight(config.concurrency, sampler.server),
                 seconds=round(seconds, 2))
    return answers


def main(config: PolicyEvalJobConfig) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    variants = json.loads(config.variants)
    if len(variants) < 2:
        raise ValueError("compare at least two variants")
    if not (config.helpfulness_rm or config.safety_rm):
        raise ValueError("give a helpfulness and/or a safety reward model")
    prompts = [_messages(row) for row in read_jsonl(config.prompts)]
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    emit("data", prompts=len(prompts), variants=[v["name"] for v in variants])
    answers = sample_all(config, variants, prompts)
    scores: dict[str, dict[str, list]] = {}
    for rm, path in zip(RM_NAMES, (config.helpfulness_rm, config.safety_rm)):
        if not path:
            continue
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        scores[rm] = {}
        for name, texts in answers.items():
            rows = [i for i, text in enumerate(texts) if text is not None]
            values = score_conversations(model, tokenizer, [
                [*prompts[i], {"role": "assistant", "content": texts[i]}] for i in rows], max_length=config.max_length)
            per_prompt = [None] * len(texts)
            for i, value in zip(rows, values):
                per_prompt[i] = value
            scores[rm][name] = per_prompt
        emit("log", step=len(variants), max_steps=len(variants), scored_with=rm)
    with open(out / "samples.jsonl", "w", encoding="utf-8") as handle:
        for i, messages in enumerate(prompts):
            for name, texts in answers.items():
                handle.write(json.dumps({"prompt": messages, "variant": name, "answer": texts[i],
                                         **{f"{rm}_score": scores[rm][name][i] for rm in scores}}) + "\n")
    evaluation = {
        "prompts": len(prompts),
        "variants": [v["name"] for v in variants],
        "win_rate": {rm: win_rates(per_variant) for rm, per_variant in scores.items()},
        "mean_score": {rm: {name: (sum(v for v in values if v is not None) / max(1, sum(v is not None for v in values)))
                            for name, values in per_variant.items()} for rm, per_variant in scores.items()},
        "failed": {name: sum(a is None for a in texts) for name, texts in answers.items()},
    }
    (out / "eval.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    (out / "tandem_job.json").write_text(json.dumps(
        {"job": "policy_eval", "config": dataclasses.asdict(config), "seed": config.seed,
         "metrics": {"prompts": len(prompts)}}, indent=2) + "\n")
    emit("done", win_rate=evaluation["win_rate"], failed=evaluation["failed"])
    return evaluation


def parse(argv: list[str]) -> PolicyEvalJobConfig:
    return parse_job(PolicyEvalJobConfig, argv, description=__doc__, required=("prompts", "variants", "out"))


if __name__ == "__main__":
    main(parse(sys.argv[1:]))
