"""GPU check of the reward-model job: SmolLM2-135M as a reward model in bf16 on synthetic pairs.

Prints pairs/s, tokens/s and peak GPU memory. BASE is a checkpoint folder; when it holds only a
config and a tokenizer (the weights are 538 MB and may not travel to the GPU machine), the model is
built from that config with random weights: the same architecture, so the same speed and memory.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    topics = ["tea", "rain", "maps", "bread", "chess", "music", "rivers", "stars", "trains", "gardens"]
    strengths = ["significantly_better", "better", "slightly_better", "negligibly_better"]
    rows = []
    for _ in range(n):
        topic = rng.choice(topics)
        body = " ".join(rng.choice(["useful", "clear", "kind", "precise", "short", "friendly", "warm"])
                        for _ in range(rng.randint(40, 160)))
        rows.append({
            "prompt": [{"role": "user",
                        "content": f"Tell me about {topic}. " + "Please be thorough. " * rng.randint(1, 8)}],
            "chosen": [{"role": "assistant", "content": f"Gladly! About {topic}: {body}. Thank you."}],
            "rejected": [{"role": "assistant", "content": "No. " + body[: rng.randint(10, 200)]}],
            "strength": rng.choice(strengths), "focus": rng.choice(["helpfulness", "safety"]),
        })
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default=str(ROOT / "var" / "models" / "smollm2-135m-instruct"))
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--accumulation", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=1024)
    args = parser.parse_args()

    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from training.jobs.reward import RewardJobConfig
    from training.jobs.reward import main as reward_main

    assert torch.cuda.is_available(), "no CUDA device"
    base = Path(args.base)
    work = Path(tempfile.mkdtemp())
    if not (base / "model.safetensors").exists():
        print(f"{base} has no weights: building SmolLM2's architecture from its config with random weights")
        config = AutoConfig.from_pretrained(base, num_labels=1)
        model = AutoModelForSequenceClassification.from_config(config)
        built = work / "base"
        model.save_pretrained(built)
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
            if (base / name).exists():
                (built / name).write_bytes((base / name).read_bytes())
        base = built
    for split, n, seed in (("train", args.pairs, 1), ("test", 400, 2)):
        (work / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in synthetic(n, seed)))
    torch.cuda.reset_peak_memory_stats()
    result = reward_main(RewardJobConfig(
        train=str(work / "train.jsonl"), eval=str(work / "test.jsonl"), base=str(base), out=str(work / "rm"),
        per_device_batch_size=args.batch, gradient_accumulation_steps=args.accumulation, max_length=args.max_length,
        bf16="yes", logging_steps=5, learning_rate=1e-5))
    summary = result["summary"]
    print(json.dumps({
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "pairs": args.pairs,
        "pairs_per_optimiser_step": args.batch * args.accumulation, "steps": summary["steps"],
        "seconds": summary["seconds"], "pairs_per_second": summary["pairs_per_second"],
        "tokens_per_second": summary["tokens_per_second"],
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "eval_accuracy_overall": result["eval"]["accuracy"]["overall"], "bf16": summary["bf16"],
    }, indent=2))


if __name__ == "__main__":
    main()
