"""Online RL against Tandem's reward models with a maintained trainer: TRL's RLOOTrainer.

Pure Python + torch/transformers/TRL, no Django. Runnable alone:

    python -m training.jobs.rloo --prompts prompts.jsonl --base var/models/smollm2-135m-instruct \
        --helpfulness-rm var/checkpoints/rm-helpfulness --safety-rm var/checkpoints/rm-safety --out var/checkpoints/rloo
    accelerate launch -m training.jobs.rloo --prompts … --base … --helpfulness-rm … --out …

Why RLOO rather than GRPO: both sample K answers per prompt and need no value model. RLOO's
baseline is the mean reward of the prompt's other K − 1 answers, unbiased, and TRL adds its KL
term to the reward (R − β·KL), which is Llama 2's R = WHITEN(LOGIT(R_c)) − β·KL; GRPO divides each
advantage by its group's standard deviation, which on small groups magnifies the reward models'
noise, and puts the KL in the loss instead.

The reward of an answer is Tandem's combined reward (`rewards.combined_rewards`): R_s when the
prompt is adversarial (`is_safety`) or σ(r_s) < 0.15, else R_h; LOGIT (the chosen RM's raw score);
WHITEN over the generation batch. The KL is to the start checkpoint (β `kl_coef`, the paper's 0.01).

Prompts: JSONL rows `{"messages": [... ending with a user turn], "is_safety": bool}` (Tandem's
prompt file, as for rejection sampling and PPO). Writes, into `--out`: the policy (safetensors,
tokenizer, a sampling generation config), `tandem_job.json`, `metrics.jsonl`. Events: `data`, one
`log` per step (reward, KL, loss, …), `done`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .common import (
    bf16_wanted,
    emit,
    messages_of,
    metrics_callback,
    parse_job,
    policy_save,
    read_jsonl,
    score_conversations,
    setting,
    tokenizer_of,
    train_top_layers,
)
from .rewards import SAFETY_THRESHOLD, combined_raw, whiten


@dataclass
class RLOOJobConfig:
    prompts: str = ""  # JSONL of prompts: {"messages": [...], "is_safety": bool} or {"prompt": "…"}
    base: str = ""  # the policy to start from, and the KL's reference
    helpfulness_rm: str = ""  # helpfulness reward model folder (at least one of the two RMs)
    safety_rm: str = ""  # safety reward model folder
    out: str = ""  # folder for the policy, tandem_job.json and metrics.jsonl
    steps: int = setting(100, "Optimiser steps (each on K answers to every prompt of a step).", low=1, high=100000,
                         label="RL steps")
    prompts_per_step: int = setting(8, "Prompts per step on one device; each gets K answers.", low=1, high=1024)
    k: int = setting(4, "Answers sampled per prompt: the leave-one-out baseline is the mean of the other K − 1.",
                     low=2, high=64, label="K answers per prompt")
    kl_coef: float = setting(0.01, "β of R − β·KL to the start checkpoint (the paper: 0.01 for 7B/13B, 0.005 for "
                                   "34B/70B).", low=0.0, high=1.0)
    learning_rate: float = setting(1e-6, "Constant learning rate (the paper's 1e-6 for PPO).", low=1e-9, high=1e-2)
    temperature: float = setting(1.0, "Sampling temperature of the answers.", low=0.05, high=2.0)
    max_new_tokens: int = setting(256, "New tokens per answer, at most.", low=1, high=8192)
    safety_threshold: float = SAFETY_THRESHOLD  # R_c takes the safety RM below this σ(r_s)
    rm_max_length: int = 4096  # tokens an RM reads; longer conversations lose their start
    max_grad_norm: float = 1.0
    bf16: str = "auto"  # auto | yes | no
    gradient_checkpointing: bool = setting(True, "Recompute activations to save memory; off for tiny models.")
    trainable_layers: int = setting(0, "Fine-tune only the top N transformer blocks (and an untied head); 0: all.",
                                    low=0, high=1024)
    seed: int = setting(0, "Seeds data order and sampling; the same seed gives the same run.", low=0, high=2**31 - 1)
    logging_steps: int = 1


def read_prompts(path: str) -> list[dict]:
    """Conversational prompts (ending with the user's turn) with their safety flag."""
    rows = []
    for number, row in enumerate(read_jsonl(path), start=1):
        messages = row["messages"] if "messages" in row else messages_of(row.get("prompt", ""), "user")
        if not messages or messages[-1].get("role") != "user" or not str(messages[-1].get("content", "")).strip():
            raise ValueError(f"{path}:{number}: a prompt ends with the user's turn")
        rows.append({"prompt": [{"role": m["role"], "content": m["content"]} for m in messages],
                     "is_safety": bool(row.get("is_safety"))})
    return rows


class CombinedReward:
    """TRL's reward-function protocol around Tandem's reward models: WHITEN(LOGIT(R_c)) of each
    answer in a generation batch; the batch's mean LOGIT(R_c) goes to the `log` events."""

    __name__ = "combined_reward"

    def __init__(self, config: RLOOJobConfig, *, device, dtype):
        from transformers import AutoModelForSequenceClassification

        self.config, self.models = config, {}
        for focus, path in (("helpfulness", config.helpfulness_rm), ("safety", config.safety_rm)):
            if path:
                tokenizer = tokenizer_of(path)
                model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
                model.config.pad_token_id = tokenizer.pad_token_id
                self.models[focus] = (model.to(device).eval().requires_grad_(False), tokenizer)
        if not self.models:
            raise ValueError("online RL needs --helpfulness-rm and/or --safety-rm")

    def scores(self, conversations: list[list[dict]]) -> dict[str, list[float]]:
        return {focus: score_conversations(model, tokenizer, conversations, max_length=self.config.rm_max_length)
                for focus, (model, tokenizer) in self.models.items()}

    def __call__(self, prompts, completions, is_safety, log_metric=None, **_) -> list[float]:
        conversations = [list(p) + list(c) for p, c in zip(prompts, completions, strict=True)]
        scores = self.scores(conversations)
        raw = [combined_raw(helpfulness=scores["helpfulness"][i] if "helpfulness" in scores else None,
                            safety=scores["safety"][i] if "safety" in scores else None,
                            is_safety_prompt=bool(is_safety[i]), threshold=self.config.safety_threshold)
               for i in range(len(conversations))]
        if log_metric is not None:
            log_metric("raw_reward", sum(raw) / len(raw))  # LOGIT(R_c) before whitening: comparable across steps
        return whiten(raw)


def main(config: RLOOJobConfig) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import RLOOConfig, RLOOTrainer

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.jsonl"
    metrics_path.write_text("")
    torch.manual_seed(config.seed)
    prompts = read_prompts(config.prompts)
    if not prompts:
        raise ValueError(f"{config.prompts}: no prompts")
    tokenizer = tokenizer_of(config.base)
    use_bf16 = bf16_wanted(config.bf16)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reward = CombinedReward(config, device=device, dtype=torch.bfloat16 if use_bf16 else torch.float32)
    model = AutoModelForCausalLM.from_pretrained(config.base, dtype=torch.float32)
    trained = train_top_layers(model, config.trainable_layers)
    args = RLOOConfig(
        output_dir=str(out / "trainer"), learning_rate=config.learning_rate, lr_scheduler_type="constant",
        max_steps=config.steps, per_device_train_batch_size=config.prompts_per_step * config.k,
        gradient_accumulation_steps=1, num_generations=config.k, max_completion_length=config.max_new_tokens,
        temperature=config.temperature, beta=config.kl_coef, max_grad_norm=config.max_grad_norm, bf16=use_bf16,
        activation_checkpointing=config.gradient_checkpointing, seed=config.seed,
        logging_steps=config.logging_steps, save_strategy="no", report_to=[], disable_tqdm=True,
        use_cpu=device == "cpu", log_completions=False,
    )
    trainer = RLOOTrainer(model=model, reward_funcs=[reward], args=args, processing_class=tokenizer,
                          train_dataset=Dataset.from_list(prompts), callbacks=[metrics_callback(metrics_path)])
    zero = trainer.is_world_process_zero()
    report = {"prompts": len(prompts), "safety_prompts": sum(p["is_safety"] for p in prompts), "k": config.k,
              "reward_models": sorted(reward.models), "kl_coef": config.kl_coef, "bf16": use_bf16, **trained}
    if zero:
        emit("data", **report)
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    history = [entry for entry in trainer.state.log_history if "reward" in entry]
    summary = {"train_loss": result.training_loss, "steps": trainer.state.global_step, "seconds": round(seconds, 2),
               "answers": trainer.state.global_step * config.prompts_per_step * config.k * trainer.args.world_size,
               "first_raw_reward": history[0].get("raw_reward") if history else None,
               "last_raw_reward": history[-1].get("raw_reward") if history else None,
               "last_kl": history[-1].get("kl") if history else None, "bf16": use_bf16}

    record = {"job": "rloo", "config": dataclasses.asdict(config), "seed": config.seed,
              "step": trainer.state.global_step, "metrics": summary}
    if policy_save(trainer, out, record):
        emit("done", **summary)
    return {"summary": summary, "data": report}


def parse(argv: list[str]) -> RLOOJobConfig:
    return parse_job(RLOOJobConfig, argv, description=__doc__, required=("prompts", "base", "out"))


if __name__ == "__main__":
    main(parse(sys.argv[1:]))
