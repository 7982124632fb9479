"""GPU check of the PPO job: SmolLM2-135M as the policy, and as the reward models (the same checkpoint
with a random scalar head, so the value model starts from an RM as in production), in bf16 on
synthetic prompts.

Prints rollout and training throughput (tokens/s), seconds per iteration and peak GPU memory. BASE
is a checkpoint folder; when it holds only a config and a tokenizer (the weights are 538 MB and may
not travel to the GPU machine), the policy is built from that config with random weights: the same
architecture, so the same speed and memory. Nothing is downloaded.

Without CUDA it stops, unless --allow-cpu is given: then the same code runs on the CPU in float32
(use a tiny checkpoint and small settings, e.g. `--base var/test-models/tiny-llama --batch 8
--mini-batch 4 --micro-batch 4 --rollout-batch 8 --max-new-tokens 8 --iterations 2`).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                   "special_tokens_map.json", "generation_config.json")


def synthetic_prompts(n: int, seed: int) -> list[dict]:
    """Chat prompts of varied length; a quarter marked adversarial so both RMs' branches run."""
    rng = random.Random(seed)
    topics = ["tea", "rain", "maps", "bread", "chess", "music", "rivers", "stars", "trains", "gardens"]
    rows = []
    for i in range(n):
        topic = rng.choice(topics)
        ask = f"Tell me about {topic}. " + "Please be thorough and give examples. " * rng.randint(1, 12)
        messages = [{"role": "user", "content": ask}]
        if rng.random() < 0.3:  # some multi-turn contexts
            answer = f"{topic.capitalize()} is a fine subject. " * rng.randint(2, 10)
            messages = [{"role": "user", "content": f"What is {topic}?"},
                        {"role": "assistant", "content": answer}, {"role": "user", "content": ask}]
        rows.append({"messages": messages, "is_safety": i % 4 == 0})
    return rows


def copy_tokenizer(source: Path, target: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            (target / name).write_bytes((source / name).read_bytes())


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=str(ROOT / "var" / "models" / "smollm2-135m-instruct"))
    parser.add_argument("--iterations", type=int, default=4, help="PPO iterations (the first one warms up)")
    parser.add_argument("--batch", type=int, default=512, help="rollouts per iteration (the paper's 512)")
    parser.add_argument("--mini-batch", type=int, default=64, help="rollouts per gradient step (paper: 64)")
    parser.add_argument("--micro-batch", type=int, default=16, help="rollouts per forward/backward")
    parser.add_argument("--rollout-batch", type=int, default=256, help="prompts per generate call")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--prompts", type=int, default=2048)
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no GPU")
    args = parser.parse_args()

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    from training.jobs.ppo import PPOJobConfig
    from training.jobs.ppo import main as ppo_main

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        sys.exit("no CUDA device (pass --allow-cpu to run the same check on the CPU)")
    base = Path(args.base)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-policy-"))
    if not (base / "model.safetensors").exists():
        print(f"{base} has no weights: building its architecture from its config with random weights")
        built = work / "policy"
        AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base)).save_pretrained(built)
        copy_tokenizer(base, built)
        base = built
    # The reward model: the policy's checkpoint with a fresh scalar head (random, as good as any for speed).
    rm_dir = work / "rm"
    AutoModelForSequenceClassification.from_pretrained(base, num_labels=1).save_pretrained(rm_dir)
    copy_tokenizer(base, rm_dir)
    prompts = work / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in synthetic_prompts(args.prompts, 1)))

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = ppo_main(PPOJobConfig(
        prompts=str(prompts), policy=str(base), out=str(work / "ppo"), helpfulness_rm=str(rm_dir),
        safety_rm=str(rm_dir), iterations=args.iterations, batch_size=args.batch,
        mini_batch_size=args.mini_batch, micro_batch_size=args.micro_batch,
        rollout_batch_size=args.rollout_batch, max_new_tokens=args.max_new_tokens, max_prompt_length=512,
        temperature=1.0, bf16="yes" if cuda else "no", samples_per_iteration=2, seed=0))
    history = result["history"]
    measured = history[1:] or history  # the first iteration pays for warm-up
    median = lambda key: round(statistics.median(h[key] for h in measured), 2)  # noqa: E731
    print(json.dumps({
        "device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
        "bf16": result["summary"]["bf16"], "iterations": len(history), "batch": args.batch,
        "mini_batch": args.mini_batch, "micro_batch": args.micro_batch, "max_new_tokens": args.max_new_tokens,
        "response_length": median("response_length"),
        "rollout_seconds_per_iteration": median("rollout_seconds"),
        "train_seconds_per_iteration": median("train_seconds"),
        "rollout_tokens_per_second": median("rollout_tokens_per_second"),
        "train_tokens_per_second": median("train_tokens_per_second"),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "reward_first": history[0]["reward"], "reward_last": history[-1]["reward"],
        "kl_last": history[-1]["kl"], "clip_frac_last": history[-1]["clip_frac"],
    }, indent=2))


if __name__ == "__main__":
    main()
