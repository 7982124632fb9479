"""The platform's reward job against a bare TRL `RewardTrainer` script: training throughput.

Both sides train the same model on the same synthetic preference pairs (the generator of
tests/training/test_reward_job.py: a polite, on-topic chosen response against a curt rejected one,
with a `strength`) with the same hyper-parameters (RewardJobConfig's, with the batch size, gradient
accumulation, max length and epochs given here), each in a fresh subprocess of the same Python:
  * platform: `python -m training.jobs.reward --train … --base … --out …`, as training/runner.py
    launches it (same environment); its figures are read from its final `{"event": "done"}` line;
  * bare: this file with `--bare`, which loads the untokenized conversational JSONL with `datasets`,
    adds a `margin` column (the small table: 1, 2/3, 1/3, 0) and hands it to `trl.RewardTrainer`,
    which tokenizes it itself.
Only `trainer.train()` is timed on either side. Tokens are the chosen + rejected token counts of
the pairs actually trained on, times the epochs. A pair longer than `--max-length` is cut from the
left by the platform and dropped by TRL; the table says how many (use `--long-share` to make some).
Prints seconds, pairs/s and tokens/s for each side and the platform/bare ratio of tokens/s (the
median over `--repeat` runs, whose order alternates).

    .venv/bin/python bench/reward_throughput.py                     # SmolLM2 when prepared, 256 pairs
    .venv/bin/python bench/reward_throughput.py --tiny --pairs 64   # the tiny random Llama
    .venv/bin/python bench/reward_throughput.py --pairs 128 --max-length 192 --threads 2 --repeat 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.preference_scale import MARGIN_TABLES  # noqa: E402

SMALL_MARGINS = MARGIN_TABLES["small"]


def synthetic(n, seed, long_share=0.0):
    """tests/training/test_reward_job.py's pairs; `long_share` of them get a 400-word prompt."""
    rng = random.Random(seed)
    topics = ["tea", "rain", "maps", "bread", "chess", "music", "rivers", "stars"]
    rows = []
    for index in range(n):
        topic = rng.choice(topics)
        rows.append({
            "prompt": [{"role": "user", "content": f"Tell me about {topic}."}],
            "chosen": [{"role": "assistant", "content": f"Gladly! Here is something lovely about {topic}, "
                                                       "thank you."}],
            "rejected": [{"role": "assistant",
                          "content": rng.choice(["No.", "Whatever.", "Ask someone else."])}],
            "strength": rng.choice(list(SMALL_MARGINS)), "focus": rng.choice(["helpfulness", "safety"]),
        })
        if index < round(n * long_share):
            rows[-1]["prompt"] = [{"role": "user", "content": f"Tell me about {topic}. " + "word " * 400}]
    if long_share:
        rng.shuffle(rows)
    return rows


def bare(argv):
    """The bare TRL side: RewardTrainer on the untokenized conversational dataset. No Django."""
    parser = argparse.ArgumentParser()
    for name in ("--train", "--base", "--out", "--config"):  # --config: RewardJobConfig's fields as JSON
        parser.add_argument(name, required=True)
    args = parser.parse_args(argv)
    hp = json.loads(args.config)

    import torch
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    dataset = load_dataset("json", data_files=args.train, split="train")
    dataset = dataset.map(lambda row: {"margin": SMALL_MARGINS.get(row["strength"], 0.0)})
    use_bf16 = {"yes": True, "no": False}.get(
        hp["bf16"], torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    torch.manual_seed(hp["seed"])
    tokenizer = AutoTokenizer.from_pretrained(args.base)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.base, num_labels=1, dtype=torch.bfloat16 if use_bf16 else torch.float32)
    total_steps = max(1, math.ceil(len(dataset) * hp["epochs"]
                                   / (hp["per_device_batch_size"] * hp["gradient_accumulation_steps"])))
    config = RewardConfig(
        output_dir=args.out, learning_rate=hp["learning_rate"], num_train_epochs=hp["epochs"],
        per_device_train_batch_size=hp["per_device_batch_size"],
        gradient_accumulation_steps=hp["gradient_accumulation_steps"],
        lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": hp["min_lr_ratio"]},
        warmup_steps=max(hp["min_warmup_steps"], math.ceil(hp["warmup_ratio"] * total_steps)),
        weight_decay=hp["weight_decay"], adam_beta1=hp["adam_beta1"], adam_beta2=hp["adam_beta2"],
        adam_epsilon=hp["adam_epsilon"], max_grad_norm=hp["max_grad_norm"], max_length=hp["max_length"],
        bf16=use_bf16, seed=hp["seed"], logging_steps=hp["logging_steps"], save_strategy="no", report_to=[],
        disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
    )
    trainer = RewardTrainer(model=model, args=config, processing_class=tokenizer, train_dataset=dataset)
    kept = trainer.train_dataset  # tokenized by TRL, pairs longer than max_length filtered out
    tokens = sum(len(c) + len(r) for c, r in zip(kept["chosen_ids"], kept["rejected_ids"]))
    tokens *= hp["epochs"]
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    print(json.dumps({"event": "done", "seconds": round(seconds, 2), "steps": trainer.state.global_step,
                      "train_loss": result.training_loss, "pairs": len(kept),
                      "dropped": len(dataset) - len(kept),
                      "tokens": tokens, "pairs_per_second": round(len(kept) * hp["epochs"] / seconds, 2),
                      "tokens_per_second": round(tokens / seconds, 1), "bf16": use_bf16}), flush=True)


def run_side(side, *, train, base, out, config, environment):
    if side == "platform":
        flags = [f"--{key.replace('_', '-')}={value}" for key, value in config.items()
                 if key != "gradient_accumulation_steps"]  # the job derives it from batch_size
        command = [sys.executable, "-m", "training.jobs.reward",
                   "--train", train, "--base", base, "--out", out, *flags]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--bare", "--train", train, "--base", base,
                   "--out", out, "--config", json.dumps(config)]
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"event"')]
    if done.returncode != 0 or not events or events[-1]["event"] != "done":
        raise SystemExit(f"{side} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    result = events[-1]
    if side == "platform":  # it never drops a pair (it cuts long ones)
        data = next(e for e in events if e["event"] == "data")
        result.update(pairs=data["train_pairs"], cut=data["truncated"])
    return result


def platform_tokens(train, model_dir, config):
    """The job's own count behind its tokens/s (its done line reports the rate only)."""
    from transformers import AutoTokenizer

    from training.jobs.reward import read_pairs, tokenize_pairs

    rows, _ = tokenize_pairs(read_pairs(train), AutoTokenizer.from_pretrained(model_dir),
                             max_length=config["max_length"], margin_table=config["margin_table"])
    return sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows) * config["epochs"]


def cpu_seconds():
    """(busy CPU seconds of the whole machine, of this process and its children); Linux only."""
    import resource

    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    own = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    # user, nice, system, irq, softirq, steal: everything but idle and iowait
    busy = sum(fields[i] for i in (0, 1, 2, 5, 6, 7)) / os.sysconf("SC_CLK_TCK")
    return busy, sum(u.ru_utime + u.ru_stime for u in own)


def choose_model(args):
    from modelserving.local_models import build_tiny_llama, is_prepared

    if args.model and not args.tiny:
        return Path(args.model)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    import django

    django.setup()
    from django.conf import settings

    smollm = Path(settings.DEFAULT_MODEL_DIR)
    if not args.tiny and is_prepared(smollm):
        return smollm
    return build_tiny_llama(ROOT / "var" / "bench-models" / "tiny-llama",
                            tokenizer_source=smollm if is_prepared(smollm) else None)


def main():
    if sys.argv[1:2] == ["--bare"]:
        return bare(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint folder (default: SmolLM2 when prepared, else tiny Llama)")
    parser.add_argument("--tiny", action="store_true", help="the tiny random Llama under var/bench-models/")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads of both sides (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side, order alternating; medians")
    parser.add_argument("--long-share", type=float, default=0.0,
                        help="share of pairs with a 400-word prompt (the platform cuts them, TRL drops them)")
    args = parser.parse_args()

    from training.jobs.reward import RewardJobConfig  # stdlib only at import time

    model_dir = choose_model(args)
    job = RewardJobConfig(per_device_batch_size=args.batch_size, batch_size=args.batch_size * args.grad_accum,
                          max_length=args.max_length, epochs=args.epochs, bf16="auto", seed=0)
    config = {key: value for key, value in dataclasses.asdict(job).items()
              if key not in ("train", "eval", "base", "out", "extra", "histogram_bins")}
    config["gradient_accumulation_steps"] = job.gradient_accumulation_steps
    assert config["margin_table"] == "small", "the bare side uses the small margin table"
    scratch = Path(tempfile.mkdtemp(prefix="reward-throughput-"))
    # training/runner.py's environment for a job; both sides get the same one.
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
                   "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(scratch / "hf-datasets")}
    if args.threads:
        environment.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    results, cpu_before = {"platform": [], "bare": []}, cpu_seconds()
    try:
        train = scratch / "train.jsonl"
        train.write_text("".join(json.dumps(r) + "\n" for r in synthetic(args.pairs, 1, args.long_share)))
        tokens = platform_tokens(str(train), model_dir, config)
        for index in range(args.repeat):
            for side in (("platform", "bare") if index % 2 == 0 else ("bare", "platform")):
                out = scratch / f"{side}-{index}"
                results[side].append(run_side(side, train=str(train), base=str(model_dir), out=str(out),
                                              config=config, environment=environment))
                if side == "platform":
                    results[side][-1]["tokens"] = tokens
                shutil.rmtree(out, ignore_errors=True)  # the platform's checkpoint
                print(f"  run {index + 1} {side}: {results[side][-1]['seconds']} s, "
                      f"{results[side][-1]['tokens_per_second']} tokens/s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    def median(side, key):
        return statistics.median(r[key] for r in results[side])

    ratios = [p["tokens_per_second"] / b["tokens_per_second"]
              for p, b in zip(results["platform"], results["bare"])]
    print(f"reward throughput: model={model_dir.name}, {args.pairs} pairs (long share {args.long_share:g}), "
          f"max_length={args.max_length}, batch={args.batch_size}×{args.grad_accum}, epochs={args.epochs:g}, "
          f"threads={args.threads or f'all ({os.cpu_count()} CPUs)'}, bf16={results['bare'][0]['bf16']}, "
          f"repeat={args.repeat} (medians)")
    busy, own = (after - before for after, before in zip(cpu_seconds(), cpu_before))
    print(f"CPU seconds used meanwhile by other processes: {busy - own:.0f} of {busy:.0f} busy "
          "(more than a few: the machine was shared and the figures are skewed)\n")
    rows = [
        ("train seconds", "{:.2f}", median("platform", "seconds"), median("bare", "seconds")),
        ("pairs trained", "{:.0f}", median("platform", "pairs"), median("bare", "pairs")),
        ("pairs over max_length: cut (platform) / dropped (TRL)", "{:.0f}",
         median("platform", "cut"), median("bare", "dropped")),
        ("tokens trained (chosen + rejected) × epochs", "{:.0f}",
         median("platform", "tokens"), median("bare", "tokens")),
        ("optimizer steps", "{:.0f}", median("platform", "steps"), median("bare", "steps")),
        ("final train loss (mean)", "{:.4f}", median("platform", "train_loss"), median("bare", "train_loss")),
        ("pairs/s", "{:.2f}", median("platform", "pairs_per_second"), median("bare", "pairs_per_second")),
        ("tokens/s", "{:.1f}", median("platform", "tokens_per_second"),
         median("bare", "tokens_per_second")),
    ]
    print("| | platform job | bare TRL |\n|---|---:|---:|")
    for label, form, platform, bare_value in rows:
        print(f"| {label} | {form.format(platform)} | {form.format(bare_value)} |")
    print(f"\nratio platform/bare, tokens/s: {statistics.median(ratios):.3f}"
          + (f" (per run: {', '.join(f'{r:.3f}' for r in ratios)})" if len(ratios) > 1 else ""))


if __name__ == "__main__":
    main()
