"""PPO against the combined reward, the Llama 2 way (LLAMA2.md, p. 15–16).

Pure Python + torch/transformers/accelerate, no Django, no TRL (TRL no longer ships PPO).
Runnable alone:

    python -m training.jobs.ppo --prompts prompts.jsonl --policy var/models/smollm2-135m-instruct \
        --out var/checkpoints/ppo --helpfulness-rm var/checkpoints/rm-helpfulness \
        --safety-rm var/checkpoints/rm-safety
    accelerate launch -m training.jobs.ppo --prompts … --policy … --out … --helpfulness-rm …

Prompts: JSONL rows `{"messages": [... ending with a user turn], "is_safety": bool}` (or
`{"prompt": "text"}`). Each iteration samples `batch_size` responses from the policy, scores them,
and takes one gradient step per mini-batch (clipped surrogate plus clipped value loss).

Reward of a response: the combined reward of the reward models' raw scores on the conversation
(`rewards.combined_rewards`: R_s if the prompt is adversarial or σ(R_s) < 0.15, else R_h; LOGIT;
WHITEN over the batch), or, with `--reward-fn package.module:function`, a plain function
`(prompt_messages, response_text) -> float` whose outputs are whitened the same way (for tests and
experiments). Per token the reward is −β·KL(π_θ ‖ π_0) (the k1 estimate), and the whitened sequence
reward is added at the last response token; advantages by GAE. An iteration's steps (rollout,
scoring, advantages, the optimisation step) are module-level functions in ppo_steps.py that take
the run's state explicitly, the models are in ppo_models.py, the losses in ppo_losses.py; `main`
below reads top to bottom.

Models: the policy from `--policy`; the reference π_0 a frozen copy; the value model is the
helpfulness RM (the safety RM when only it is given) read at every position through its score
head, or, with no RM, the policy's decoder with a zero-initialised scalar head. Trained models keep
float32 weights and run under bf16 autocast where the hardware has it (a 1e-6 step is lost in bf16
weights); frozen ones are loaded in bf16. Under `accelerate launch` each process samples its share
of the batch with its own full copy of the policy (DDP); sharding the policy (FSDP, ZeRO-3) would
need generation over gathered weights, which this job does not do.

Output in `out`: the final policy (safetensors, its tokenizer, a generation config that samples),
`tandem_job.json` (config, seed, step, metrics), `metrics.jsonl` and `samples.jsonl`. With
`--eval-prompts` the written policy is instead the one with the best mean raw reward on the
held-out prompts, and `--early-stop-patience` stops after that many evaluations without a better
one. Events are printed as JSON lines: `data`, one `log` and one `samples` per iteration, `eval`,
`early_stop`, `done`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import rewards
from .common import bf16_wanted, emit, messages_of, parse_job, read_jsonl, setting


@dataclass
class PPOJobConfig:
    prompts: str = ""  # JSONL: {"messages": [...], "is_safety": bool} or {"prompt": "text"}
    policy: str = ""  # checkpoint to start from; the reference policy π_0 is a frozen copy of it
    out: str = ""  # folder for the policy, metrics.jsonl, samples.jsonl and tandem_job.json
    helpfulness_rm: str = ""  # helpfulness reward model (R_h); also initialises the value model
    safety_rm: str = ""  # safety reward model (R_s); initialises the value model when it is the only RM
    reward_fn: str = ""  # instead of RMs: "package.module:function", (prompt_messages, response) -> float
    eval_prompts: str = ""  # held-out prompts (same format) for choosing the checkpoint and early stopping
    eval_every: int = 10  # iterations between held-out evaluations (the last one is always evaluated)
    early_stop_patience: int = 0  # evaluations in a row without a better held-out reward; 0: never stop
    iterations: int = setting(200, "PPO iterations (the paper: 200–400).", low=1, high=10000, label="PPO iterations")
    batch_size: int = setting(512, "Rollouts per iteration, all processes together (the paper's 512).", low=1,
                              high=8192, label="PPO rollouts per iteration")
    mini_batch_size: int = setting(64, "Rollouts per gradient step, all processes together (the paper's 64).",
                                   low=1, high=8192, label="PPO mini-batch")
    micro_batch_size: int = setting(8, "Rollouts per forward and backward pass on one device (mini-batches "
                                       "accumulate).", low=1, high=1024)
    rollout_batch_size: int = setting(64, "Prompts per generate call and per reward-model batch on one device.",
                                      low=1, high=1024)
    ppo_epochs: int = 1  # passes over an iteration's rollouts (1: one gradient step per mini-batch)
    learning_rate: float = setting(1e-6, "Constant learning rate (the paper's 1e-6 for PPO).", low=1e-9, high=1e-2)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-5
    weight_decay: float = 0.1  # on matrices; norms and biases are not decayed
    max_grad_norm: float = 1.0  # clip on the policy's and the value model's gradients together
    kl_coef: float = setting(0.01, "β of the per-token −β·KL to the starting policy (the paper: 0.01 for 7B/13B, "
                                   "0.005 for 34B/70B).", low=0.0, high=1.0, label="PPO β (KL)")
    cliprange: float = setting(0.2, "ε of the clipped surrogate.", low=0.01, high=1.0)
    cliprange_value: float = 0.2  # ε of the clipped value loss
    vf_coef: float = 0.1  # weight of the value loss in the summed loss
    gamma: float = 1.0  # GAE discount
    lam: float = 0.95  # GAE λ
    whiten_advantages: bool = True  # standardise advantages over the iteration's response tokens
    temperature: float = setting(1.0, "Rollout sampling temperature (log-probabilities are of the tempered "
                                      "policy).", low=0.01, high=2.0)
    top_p: float = 1.0  # nucleus sampling of the rollouts (1: the whole distribution)
    max_new_tokens: int = setting(256, "New tokens per rollout, at most.", low=1, high=8192)
    max_prompt_length: int = 512  # prompt tokens kept (the last ones) before sampling
    rm_max_length: int = 1024  # tokens of prompt + response a reward model reads (the last ones)
    safety_threshold: float = rewards.SAFETY_THRESHOLD  # σ(R_s) below it: the safety reward is used
    samples_per_iteration: int = 4  # rows in each `samples` event (the dashboard's table)
    save_dtype: str = "auto"  # written weights: auto (the starting checkpoint's) | float32 | bfloat16
    bf16: str = "auto"  # auto (when the hardware has it) | yes | no
    seed: int = setting(0, "Seeds data order and sampling; the same seed gives the same run.", low=0, high=2**31 - 1)
    extra: dict = field(default_factory=dict)  # free-form notes carried into the checkpoint


# --- inputs -------------------------------------------------------------------------------------


def read_prompts(path: str) -> list[dict]:
    """[{"messages": [...], "is_safety": bool}]; a bare "prompt" becomes one user message."""
    prompts = []
    for number, row in enumerate(read_jsonl(path), start=1):
        if "messages" in row:
            messages = list(row["messages"])
        elif "prompt" in row:
            messages = messages_of(row["prompt"], "user")
        else:
            raise ValueError(f"{path}: row {number} has neither 'messages' nor 'prompt'")
        if not messages or messages[-1].get("role") != "user":
            raise ValueError(f"{path}: row {number} must end with a user turn")
        prompts.append({"messages": messages, "is_safety": bool(row.get("is_safety", False))})
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    return prompts


def encode_prompts(tokenizer, prompts: list[dict], *, max_length: int) -> tuple[list[list[int]], int]:
    """Chat-template token ids ending with the assistant header, cut to their last max_length
    tokens; and how many were cut."""
    ids, cut = [], 0
    for prompt in prompts:
        tokens = tokenizer.apply_chat_template(prompt["messages"], add_generation_prompt=True, tokenize=True,
                                               return_dict=False)
        if hasattr(tokens, "input_ids"):
            tokens = tokens["input_ids"]
        tokens = list(tokens)
        cut += len(tokens) > max_length
        ids.append(tokens[-max_length:])
    return ids, cut


def load_reward_fn(dotted: str):
    """`package.module:function` (or `package.module.function`) → the function."""
    module, _, name = dotted.partition(":") if ":" in dotted else dotted.rpartition(".")
    if not module or not name:
        raise ValueError(f"--reward-fn {dotted!r}: expected package.module:function")
    return getattr(importlib.import_module(module), name)


def prompt_order(n: int, seed: int):
    """Endless prompt indices: a fresh shuffle per pass over the prompts, the same on every process."""
    rng = random.Random(seed)
    while True:
        order = list(range(n))
        rng.shuffle(order)
        yield from order


# --- the job ------------------------------------------------------------------------------------


def iteration_record(state, config, *, step: int, scores: dict, whitened: list[float], rollouts, prompt_ids,
                     losses: dict, rollout_seconds: float, train_seconds: float) -> dict:
    """The `log` event of an iteration: rewards, KL, losses, lengths and speeds over all processes."""
    from . import ppo_steps  # torch: imported where the job runs, not where its config is read

    raw, sequence_kl = scores["raw"], rollouts.kl.sum(1)
    response_tokens = float(rollouts.mask.sum())
    (raw_sum, raw_squares, whitened_sum, kl_sum, response_tokens, sequence_tokens, n, helpfulness_sum,
     safety_sum, *loss_sums) = ppo_steps.global_sums(
        state, sum(raw), sum(x * x for x in raw), sum(whitened), float(sequence_kl.sum()), response_tokens,
        response_tokens + sum(map(len, prompt_ids)), len(raw),
        *(sum(scores[focus]) if focus in scores else 0.0 for focus in ("helpfulness", "safety")),
        *(losses[name] for name in ppo_steps.LOSS_METRICS))
    mean_raw = raw_sum / n
    record = {
        "step": step, "max_steps": config.iterations,
        "reward": mean_raw, "reward_std": max(raw_squares / n - mean_raw ** 2, 0.0) ** 0.5,
        "reward_whitened": whitened_sum / n,
        "kl": kl_sum / n, "non_score_reward": -config.kl_coef * kl_sum / n,
        **{name: total / state.world for name, total in zip(ppo_steps.LOSS_METRICS, loss_sums)},
        "response_length": response_tokens / n,
        "rollout_seconds": round(rollout_seconds, 3), "train_seconds": round(train_seconds, 3),
        # Generated tokens per second of rollout (sampling, scoring and the no-grad forwards), and
        # prompt + response tokens through forward and backward per second of optimisation.
        "rollout_tokens_per_second": round(response_tokens / rollout_seconds, 1),
        "train_tokens_per_second": round(sequence_tokens * config.ppo_epochs / train_seconds, 1),
        "learning_rate": config.learning_rate, "gradient_steps": losses["gradient_steps"],
    }
    for focus, total in (("helpfulness", helpfulness_sum), ("safety", safety_sum)):
        if focus in scores:
            record[f"score_{focus}"] = total / n
    return record


def main(config: PPOJobConfig) -> dict:
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from . import ppo_steps
    from .ppo_models import load_state, save_dtype_of, save_policy

    if bool(config.reward_fn) == bool(config.helpfulness_rm or config.safety_rm):
        raise ValueError("give either --reward-fn or at least one of --helpfulness-rm / --safety-rm")
    cuda = torch.cuda.is_available()
    use_bf16 = bf16_wanted(config.bf16)
    accelerator = Accelerator(mixed_precision="bf16" if use_bf16 else "no", cpu=not cuda)
    world, rank = accelerator.num_processes, accelerator.process_index
    if config.batch_size % config.mini_batch_size or config.mini_batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must be a multiple of mini_batch_size "
                         f"{config.mini_batch_size}, and that of the number of processes ({world})")
    local_batch = config.batch_size // world
    set_seed(config.seed, device_specific=True)  # each process samples differently
    out = Path(config.out)
    main_process = accelerator.is_main_process
    say = emit if main_process else (lambda event, **data: None)
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.jsonl", "samples.jsonl"):
            (out / name).unlink(missing_ok=True)

    reward_fn = load_reward_fn(config.reward_fn) if config.reward_fn else None
    state = load_state(config, accelerator, use_bf16=use_bf16, reward_fn=reward_fn)
    save_dtype = save_dtype_of(config)
    train_prompts = read_prompts(config.prompts)
    eval_prompts = read_prompts(config.eval_prompts) if config.eval_prompts else []
    train_ids, truncated = encode_prompts(state.tokenizer, train_prompts, max_length=config.max_prompt_length)
    eval_ids, _ = encode_prompts(state.tokenizer, eval_prompts, max_length=config.max_prompt_length)
    say("data", prompts=len(train_prompts), safety_prompts=sum(p["is_safety"] for p in train_prompts),
        eval_prompts=len(eval_prompts), truncated_prompts=truncated, processes=world, bf16=use_bf16,
        reward="reward_fn" if reward_fn else "+".join(state.scorers),
        value_init=state.value_source or "policy",
        config={k: v for k, v in dataclasses.asdict(config).items() if k != "extra"})
    whiten = functools.partial(ppo_steps.whiten_across, state)

    order = prompt_order(len(train_prompts), config.seed)
    history, evaluations = [], []
    best, stale, step = {"step": None, "eval_reward": None}, 0, 0
    if eval_prompts:
        reward = ppo_steps.evaluate(state, config, eval_prompts, eval_ids, step=0, out=out)
        evaluations.append({"step": 0, "eval_reward": reward})
    for step in range(1, config.iterations + 1):
        started = time.perf_counter()
        batch = [next(order) for _ in range(config.batch_size)][rank * local_batch:(rank + 1) * local_batch]
        prompts, prompt_ids = [train_prompts[i] for i in batch], [train_ids[i] for i in batch]
        responses = ppo_steps.rollout(state, config, prompt_ids)
        texts = [state.tokenizer.decode(r, skip_special_tokens=True) for r in responses]
        scores = ppo_steps.score(state, config, prompts, texts)
        whitened = ppo_steps.whitened_rewards(state, config, prompts, scores)
        logprobs, ref_logprobs, values = ppo_steps.forward_no_grad(state, config, prompt_ids, responses)
        rollouts = ppo_steps.advantages(config, whitened=whitened, logprobs=logprobs, ref_logprobs=ref_logprobs,
                                        values=values, whiten=whiten)
        rollout_seconds = time.perf_counter() - started

        started = time.perf_counter()
        losses = ppo_steps.optimise(state, config, prompt_ids, responses, rollouts)
        train_seconds = time.perf_counter() - started

        record = iteration_record(state, config, step=step, scores=scores, whitened=whitened, rollouts=rollouts,
                                  prompt_ids=prompt_ids, losses=losses, rollout_seconds=rollout_seconds,
                                  train_seconds=train_seconds)
        history.append(record)
        samples = [{"prompt": prompts[i]["messages"][-1]["content"], "response": texts[i],
                    "is_safety": prompts[i]["is_safety"], "reward": scores["raw"][i],
                    "reward_whitened": whitened[i], "kl": float(rollouts.kl[i].sum())}
                   for i in range(min(config.samples_per_iteration, len(prompts)))]
        say("log", **record)
        say("samples", step=step, rows=samples)
        if main_process:
            with open(out / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
            with open(out / "samples.jsonl", "a") as handle:
                handle.writelines(json.dumps({"step": step, **row}) + "\n" for row in samples)

        # Held-out evaluation: keep the best policy, stop when it no longer improves.
        if eval_prompts and (step % config.eval_every == 0 or step == config.iterations):
            reward = ppo_steps.evaluate(state, config, eval_prompts, eval_ids, step=step, out=out)
            evaluations.append({"step": step, "eval_reward": reward})
            if best["eval_reward"] is None or reward > best["eval_reward"]:
                best, stale = {"step": step, "eval_reward": reward}, 0
                save_policy(accelerator, state.model, state.tokenizer, out, dtype=save_dtype)
            else:
                stale += 1
                if config.early_stop_patience and stale >= config.early_stop_patience:
                    say("early_stop", step=step, best_step=best["step"], best_eval_reward=best["eval_reward"])
                    break

    if best["step"] is None:
        save_policy(accelerator, state.model, state.tokenizer, out, dtype=save_dtype)
    last = history[-1] if history else {}
    summary = {
        "steps": step, "iterations": config.iterations, "bf16": use_bf16, "processes": world,
        "reward_first": history[0]["reward"] if history else None, "reward_last": last.get("reward"),
        "kl_last": last.get("kl"), "best_step": best["step"], "best_eval_reward": best["eval_reward"],
        "rollout_seconds": round(sum(h["rollout_seconds"] for h in history), 2),
        "train_seconds": round(sum(h["train_seconds"] for h in history), 2),
        **{key: last[key] for key in ("rollout_tokens_per_second", "train_tokens_per_second") if key in last},
    }
    if main_process:
        (out / "tandem_job.json").write_text(json.dumps(
            {"job": "ppo", "config": dataclasses.asdict(config), "seed": config.seed,
             "step": best["step"] if best["step"] is not None else step, "metrics": summary, "last": last,
             "evaluations": evaluations}, indent=2) + "\n")
    say("done", **summary)
    accelerator.wait_for_everyone()
    return {"summary": summary, "history": history, "evaluations": evaluations}


def parse(argv: list[str]) -> PPOJobConfig:
    return parse_job(PPOJobConfig, argv, description=__doc__, required=("prompts", "policy", "out"))


if __name__ == "__main__":
    main(parse(sys.argv[1:]))
