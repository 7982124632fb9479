"""One PPO iteration, step by step, each a function of its inputs and the run's state
(ppo_models.PPOState), in the order training/jobs/ppo.py calls them:

    rollout            sample responses from the policy
    score              raw rewards: per reward model and the combined LOGIT(R_c), or the reward function
    whitened_rewards   WHITEN over the iteration's whole batch (all processes)
    forward_no_grad    log π_old, log π_0 and V_old over the response tokens
    advantages         per-token −β·KL plus the sequence reward at the last token, GAE, whitened
    optimise           PPO epochs over mini-batches: clipped surrogate + clipped value loss
    evaluate           mean raw reward on held-out prompts under a fixed seed

The losses themselves are in ppo_losses.py.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from . import rewards
from .common import emit, score_conversations
from .ppo_losses import (
    entropy_from_logits,
    gae,
    kl_penalised_rewards,
    kl_per_token,
    logprobs_from_logits,
    masked_mean,
    masked_whiten,
    policy_loss,
    value_loss,
)
from .ppo_models import PPOState, collate, pad_right

# Averaged over an iteration's gradient steps (and processes) in each `log` event.
LOSS_METRICS = ("policy_loss", "value_loss", "entropy", "clip_frac", "approx_kl", "grad_norm")


@dataclass
class Rollouts:
    """An iteration's rollouts on this process, as [n, R] tensors padded on the right."""

    mask: object  # 1 on response tokens
    logprobs: object  # log π_old (tempered)
    values: object  # V_old
    kl: object  # per-token KL(π_old ‖ π_0), zero on padding
    advantages: object
    returns: object


def rollout(state: PPOState, config, prompt_ids: list[list[int]]) -> list[list[int]]:
    """Sampled responses, each cut after its first end-of-sequence token."""
    import torch

    responses = []
    for start in range(0, len(prompt_ids), config.rollout_batch_size):
        chunk = prompt_ids[start:start + config.rollout_batch_size]
        width = max(map(len, chunk))
        input_ids = torch.full((len(chunk), width), state.pad_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for i, ids in enumerate(chunk):
            input_ids[i, width - len(ids):], attention[i, width - len(ids):] = torch.tensor(ids), 1
        with torch.no_grad(), state.accelerator.autocast():
            generated = state.unwrapped.policy.generate(input_ids=input_ids.to(state.device),
                                                        attention_mask=attention.to(state.device),
                                                        generation_config=state.generation)
        for row in generated[:, width:].tolist():
            end = next((i for i, token in enumerate(row) if token in state.eos_ids), len(row) - 1)
            responses.append(row[:end + 1])
    return responses


def score(state: PPOState, config, prompts: list[dict], texts: list[str]) -> dict:
    """Raw scores of this process's rollouts: per RM, and the combined LOGIT(R_c) as "raw"."""
    if state.reward_fn:
        return {"raw": [float(state.reward_fn(p["messages"], text)) for p, text in zip(prompts, texts)]}
    conversations = [p["messages"] + [{"role": "assistant", "content": text}] for p, text in zip(prompts, texts)]
    scores = {focus: score_conversations(rm, rm_tokenizer, conversations, max_length=config.rm_max_length,
                                         batch_size=config.rollout_batch_size)
              for focus, (rm, rm_tokenizer) in state.scorers.items()}
    h, s = scores.get("helpfulness"), scores.get("safety")
    scores["raw"] = [
        rewards.combined_raw(helpfulness=h[i] if h else None, safety=s[i] if s else None,
                             is_safety_prompt=p["is_safety"], threshold=config.safety_threshold)
        for i, p in enumerate(prompts)]
    return scores


def whitened_rewards(state: PPOState, config, prompts: list[dict], scores: dict) -> list[float]:
    """WHITEN over the whole iteration's batch (all processes); this process's share back."""
    from accelerate.utils import gather_object

    if state.reward_fn:
        everything = rewards.whiten(gather_object(scores["raw"]))
    else:
        everything = rewards.combined_rewards(
            helpfulness_scores=gather_object(scores["helpfulness"]) if "helpfulness" in scores else None,
            safety_scores=gather_object(scores["safety"]) if "safety" in scores else None,
            is_safety_prompt=gather_object([p["is_safety"] for p in prompts]),
            threshold=config.safety_threshold)
    return everything[state.rank * len(prompts):(state.rank + 1) * len(prompts)]


def global_sums(state: PPOState, *values: float) -> list[float]:
    """Each value summed over all processes."""
    import torch

    summed = state.accelerator.reduce(torch.tensor(values, dtype=torch.float64, device=state.device), "sum")
    return summed.tolist()


def whiten_across(state: PPOState, values, mask):
    """masked_whiten, with the mean and variance of all processes' tokens."""
    if state.world == 1:
        return masked_whiten(values, mask)
    total, squares, n = global_sums(state, float((values * mask).sum()), float((values ** 2 * mask).sum()),
                                    float(mask.sum()))
    mean = total / n
    var = (squares - n * mean ** 2) / max(n - 1, 1)
    return (values - mean) / (var + 1e-8) ** 0.5 * mask


def tempered_logprobs(logits, labels, temperature: float):
    """Log-probabilities of the tempered policy, the one the rollouts were sampled from."""
    return logprobs_from_logits(logits.float() / temperature, labels)


def forward_no_grad(state: PPOState, config, prompt_ids, responses):
    """Per rollout: log π_old, log π_0 and V_old over its response tokens (1-D tensors)."""
    import torch

    logprobs, ref_logprobs, values = [], [], []
    size = config.micro_batch_size  # the logits over the vocabulary are what takes the memory
    for start in range(0, len(responses), size):
        chunk = responses[start:start + size]
        input_ids, attention, positions, _, width = collate(prompt_ids[start:start + size], chunk,
                                                            pad_id=state.pad_id)
        input_ids, attention, positions = (x.to(state.device) for x in (input_ids, attention, positions))
        labels = input_ids[:, -width:]
        with torch.no_grad(), state.accelerator.autocast():
            logits, value_estimates = state.unwrapped(input_ids, attention, positions, width)
            policy_lp = tempered_logprobs(logits, labels, config.temperature)
            del logits
            ref_logits = state.reference(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                                         logits_to_keep=width + 1, use_cache=False).logits[:, :-1]
            ref_lp = tempered_logprobs(ref_logits, labels, config.temperature)
            del ref_logits
        for i, response in enumerate(chunk):
            logprobs.append(policy_lp[i, :len(response)].cpu())
            ref_logprobs.append(ref_lp[i, :len(response)].cpu())
            values.append(value_estimates[i, :len(response)].float().cpu())
    return logprobs, ref_logprobs, values


def advantages(config, *, whitened: list[float], logprobs: list, ref_logprobs: list, values: list,
               whiten=masked_whiten) -> Rollouts:
    """Per-rollout 1-D tensors → padded tensors, the per-token rewards (−β·KL, plus the whitened
    sequence reward at the last response token), and GAE's advantages (whitened unless the config
    says not) and returns. ``whiten`` is whiten_across under several processes."""
    import torch

    width = max(map(len, logprobs))
    mask = pad_right([torch.ones(len(row)) for row in logprobs], width)
    logprobs, ref_logprobs, values = (pad_right(rows, width) for rows in (logprobs, ref_logprobs, values))
    kl = kl_per_token(logprobs, ref_logprobs) * mask
    token_rewards = kl_penalised_rewards(torch.tensor(whitened), kl, mask, config.kl_coef)
    advantage, returns = gae(token_rewards, values, mask, config.gamma, config.lam)
    if config.whiten_advantages:
        advantage = whiten(advantage, mask)
    return Rollouts(mask=mask, logprobs=logprobs, values=values, kl=kl, advantages=advantage, returns=returns)


def optimise(state: PPOState, config, prompt_ids, responses, rollouts: Rollouts) -> dict:
    """PPO epochs over shuffled mini-batches, one gradient step each, accumulated over
    micro-batches so that each step's loss is the mini-batch's token mean."""
    import torch

    accelerator, model, device = state.accelerator, state.model, state.device
    totals = dict.fromkeys(LOSS_METRICS, 0.0)
    steps = 0
    local_mini = config.mini_batch_size // state.world
    for _ in range(config.ppo_epochs):
        for mini in torch.randperm(len(responses), generator=state.shuffle).split(local_mini):
            mini_tokens = float(rollouts.mask[mini].sum())
            micros = mini.split(config.micro_batch_size)
            state.optimizer.zero_grad(set_to_none=True)
            for k, micro in enumerate(micros):
                idx = micro.tolist()
                input_ids, attention, positions, micro_mask, width = collate(
                    [prompt_ids[i] for i in idx], [responses[i] for i in idx], pad_id=state.pad_id)
                input_ids, attention, positions, micro_mask = (
                    x.to(device) for x in (input_ids, attention, positions, micro_mask))
                old_lp, old_v, adv, ret = (x[micro, :width].to(device) for x in (
                    rollouts.logprobs, rollouts.values, rollouts.advantages, rollouts.returns))
                share = float(micro_mask.sum()) / mini_tokens
                syncing = contextlib.nullcontext() if k == len(micros) - 1 else accelerator.no_sync(model)
                with syncing:
                    with accelerator.autocast():
                        logits, values = model(input_ids, attention, positions, width)
                    logprobs = tempered_logprobs(logits, input_ids[:, -width:], config.temperature)
                    pg_loss, clip_frac, approx_kl = policy_loss(logprobs, old_lp, adv, micro_mask, config.cliprange)
                    vf_loss = value_loss(values.float(), old_v, ret, micro_mask, config.cliprange_value)
                    accelerator.backward((pg_loss + config.vf_coef * vf_loss) * share)
                with torch.no_grad():
                    tempered = logits.detach().float() / config.temperature
                    entropy = masked_mean(entropy_from_logits(tempered), micro_mask)
                for key, item in (("policy_loss", pg_loss), ("value_loss", vf_loss), ("entropy", entropy),
                                  ("clip_frac", clip_frac), ("approx_kl", approx_kl)):
                    totals[key] += float(item.detach()) * share
                del logits, values, logprobs, tempered
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            totals["grad_norm"] += float(grad_norm)
            state.optimizer.step()
            steps += 1
    return {key: total / max(steps, 1) for key, total in totals.items()} | {"gradient_steps": steps}


def evaluate(state: PPOState, config, eval_prompts: list[dict], eval_ids: list[list[int]], *, step: int,
             out: Path) -> float:
    """Mean raw reward of one sample per held-out prompt (sampled under a fixed seed)."""
    import torch

    mine = list(range(state.rank, len(eval_prompts), state.world))
    with torch.random.fork_rng(devices=[state.device] if state.device.type == "cuda" else []):
        torch.manual_seed(config.seed + 1_000_003)
        responses = rollout(state, config, [eval_ids[i] for i in mine]) if mine else []
    texts = [state.tokenizer.decode(r, skip_special_tokens=True) for r in responses]
    raw = score(state, config, [eval_prompts[i] for i in mine], texts)["raw"] if mine else []
    total, n, tokens = global_sums(state, sum(raw), len(raw), sum(map(len, responses)))
    record = {"step": step, "eval_reward": total / max(n, 1), "eval_response_length": tokens / max(n, 1)}
    if state.accelerator.is_main_process:
        emit("eval", **record)
        with open(out / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
    return record["eval_reward"]
