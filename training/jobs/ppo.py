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
reward is added at the last response token; advantages by GAE. The losses are in ppo_losses.py.

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

import argparse
import contextlib
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
from .common import add_arguments, emit, messages_of, read_jsonl, score_conversations


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
    iterations: int = 200  # PPO iterations (the paper: 200–400)
    batch_size: int = 512  # rollouts per iteration, all processes together (the paper's 512)
    mini_batch_size: int = 64  # rollouts per gradient step, all processes together (the paper's 64)
    micro_batch_size: int = 8  # rollouts per forward (and backward) on one device; mini-batches accumulate
    rollout_batch_size: int = 64  # prompts per generate call and per reward-model batch on one device
    ppo_epochs: int = 1  # passes over an iteration's rollouts (1: one gradient step per mini-batch)
    learning_rate: float = 1e-6  # constant, the paper's
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-5
    weight_decay: float = 0.1  # on matrices; norms and biases are not decayed
    max_grad_norm: float = 1.0  # clip on the policy's and the value model's gradients together
    kl_coef: float = 0.01  # β of the per-token −β·KL (the paper: 0.01 for 7B/13B, 0.005 for 34B/70B)
    cliprange: float = 0.2  # ε of the clipped surrogate
    cliprange_value: float = 0.2  # ε of the clipped value loss
    vf_coef: float = 0.1  # weight of the value loss in the summed loss
    gamma: float = 1.0  # GAE discount
    lam: float = 0.95  # GAE λ
    whiten_advantages: bool = True  # standardise advantages over the iteration's response tokens
    temperature: float = 1.0  # rollout sampling temperature; log-probabilities are of the tempered policy
    top_p: float = 1.0  # nucleus sampling of the rollouts (1: the whole distribution)
    max_new_tokens: int = 256  # response length limit
    max_prompt_length: int = 512  # prompt tokens kept (the last ones) before sampling
    rm_max_length: int = 1024  # tokens of prompt + response a reward model reads (the last ones)
    safety_threshold: float = rewards.SAFETY_THRESHOLD  # σ(R_s) below it: the safety reward is used
    samples_per_iteration: int = 4  # rows in each `samples` event (the dashboard's table)
    save_dtype: str = "auto"  # written weights: auto (the starting checkpoint's) | float32 | bfloat16
    bf16: str = "auto"  # auto (when the hardware has it) | yes | no
    seed: int = 0
    extra: dict = field(default_factory=dict)  # free-form notes carried into the checkpoint


# Averaged over an iteration's gradient steps (and processes) in each `log` event.
LOSS_METRICS = ("policy_loss", "value_loss", "entropy", "clip_frac", "approx_kl", "grad_norm")


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


# --- models -------------------------------------------------------------------------------------


@functools.cache
def _modules():
    """The nn.Module classes (defined on first use so that parsing arguments imports no torch)."""
    import torch

    class ValueModel(torch.nn.Module):
        """A value per position: a decoder's last hidden states through a scalar head."""

        def __init__(self, backbone, head):
            super().__init__()
            self.backbone, self.head = backbone, head

        def forward(self, input_ids, attention_mask=None, position_ids=None):
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                                   position_ids=position_ids, use_cache=False).last_hidden_state
            return self.head(hidden).squeeze(-1).float()

    class PolicyAndValue(torch.nn.Module):
        """Both trained models under one module, so that one optimiser and one `prepare` serve both.
        Inputs are [left-padded prompt | right-padded response of width R]; outputs are the policy's
        logits and the values at the R positions that predict the response tokens (position
        P − 1 + t predicts response token t)."""

        def __init__(self, policy, value):
            super().__init__()
            self.policy, self.value = policy, value

        def forward(self, input_ids, attention_mask, position_ids, response_width: int):
            logits = self.policy(input_ids=input_ids, attention_mask=attention_mask,
                                 position_ids=position_ids, logits_to_keep=response_width + 1,
                                 use_cache=False).logits[:, :-1]
            values = self.value(input_ids, attention_mask, position_ids)[:, -response_width - 1:-1]
            return logits, values

    return ValueModel, PolicyAndValue


def build_value_model(*, reward_model: str, policy: str, dtype):
    """The value model: the RM's decoder and its `score` head read at every position (so the value
    at a position is the RM's score of the sequence up to there), or, without an RM, the policy's
    decoder with a zero-initialised scalar head."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    ValueModel, _ = _modules()
    if reward_model:
        rm = AutoModelForSequenceClassification.from_pretrained(reward_model, num_labels=1, dtype=dtype)
        head = getattr(rm, "score", None)
        if not isinstance(head, torch.nn.Linear):
            raise ValueError(f"{reward_model}: a sequence-classification model with a `score` head is needed")
        return ValueModel(getattr(rm, rm.base_model_prefix), head)
    backbone = AutoModel.from_pretrained(policy, dtype=dtype)
    head = torch.nn.Linear(backbone.config.hidden_size, 1, bias=False, dtype=dtype)
    torch.nn.init.zeros_(head.weight)
    return ValueModel(backbone, head)


def collate(prompts: list[list[int]], responses: list[list[int]], *, pad_id: int):
    """[left-padded prompts | right-padded responses] → input_ids, attention_mask, position_ids,
    response_mask ([n, R], 1 on response tokens) and R."""
    import torch

    width_p, width_r = max(map(len, prompts)), max(map(len, responses))
    input_ids = torch.full((len(prompts), width_p + width_r), pad_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        input_ids[i, width_p - len(prompt):width_p] = torch.tensor(prompt)
        input_ids[i, width_p:width_p + len(response)] = torch.tensor(response)
        attention[i, width_p - len(prompt):width_p + len(response)] = 1
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    return input_ids, attention, position_ids, attention[:, width_p:].float(), width_r


def pad_right(rows: list, width: int):
    """Per-rollout 1-D tensors → one [n, width] float tensor, zero padded on the right."""
    import torch

    out = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def save_policy(accelerator, model, tokenizer, out: Path, *, dtype) -> None:
    """The policy as a servable safetensors checkpoint: weights in `dtype`, tokenizer, and a
    generation config with `do_sample: true` (`transformers serve` is greedy without it)."""
    state = accelerator.get_state_dict(model)  # every process takes part (FSDP / DeepSpeed gather)
    if not accelerator.is_main_process:
        return
    cast = {}  # one cast per storage, so that tied weights (embeddings and LM head) stay tied
    policy_state = {name[len("policy."):]: cast.setdefault(tensor.data_ptr(), tensor.to(dtype))
                    for name, tensor in state.items() if name.startswith("policy.")}
    policy = accelerator.unwrap_model(model).policy
    policy.save_pretrained(out, state_dict=policy_state, safe_serialization=True)
    config = json.loads((out / "config.json").read_text())
    config["dtype"] = str(dtype).removeprefix("torch.")
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer.save_pretrained(out)
    path = out / "generation_config.json"
    generation = json.loads(path.read_text()) if path.exists() else {}
    generation["do_sample"] = True
    generation.setdefault("temperature", 0.7)
    generation.setdefault("top_p", 0.9)
    path.write_text(json.dumps(generation, indent=2) + "\n")


# --- the job ------------------------------------------------------------------------------------


def main(config: PPOJobConfig) -> dict:
    import torch
    from accelerate import Accelerator
    from accelerate.utils import gather_object, set_seed
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        GenerationConfig,
    )

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

    if bool(config.reward_fn) == bool(config.helpfulness_rm or config.safety_rm):
        raise ValueError("give either --reward-fn or at least one of --helpfulness-rm / --safety-rm")
    cuda = torch.cuda.is_available()
    use_bf16 = {"yes": True, "no": False}.get(config.bf16, cuda and torch.cuda.is_bf16_supported())
    accelerator = Accelerator(mixed_precision="bf16" if use_bf16 else "no", cpu=not cuda)
    world, rank, device = accelerator.num_processes, accelerator.process_index, accelerator.device
    if config.batch_size % config.mini_batch_size or config.mini_batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must be a multiple of mini_batch_size "
                         f"{config.mini_batch_size}, and that of the number of processes ({world})")
    local_batch, local_mini = config.batch_size // world, config.mini_batch_size // world
    set_seed(config.seed, device_specific=True)  # each process samples differently
    out = Path(config.out)
    say = emit if accelerator.is_main_process else (lambda event, **data: None)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.jsonl", "samples.jsonl"):
            (out / name).unlink(missing_ok=True)

    # --- models ---------------------------------------------------------------------------------
    tokenizer = AutoTokenizer.from_pretrained(config.policy)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    pad_id = tokenizer.pad_token_id
    frozen_dtype = torch.bfloat16 if use_bf16 else torch.float32
    policy = AutoModelForCausalLM.from_pretrained(config.policy, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(config.policy, dtype=frozen_dtype)
    reference.to(device).eval().requires_grad_(False)
    scorers = {}
    for focus, path in (("helpfulness", config.helpfulness_rm), ("safety", config.safety_rm)):
        if path:
            rm_tokenizer = AutoTokenizer.from_pretrained(path)
            if rm_tokenizer.pad_token_id is None:
                rm_tokenizer.pad_token = rm_tokenizer.eos_token
            rm = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=frozen_dtype)
            rm.config.pad_token_id = rm_tokenizer.pad_token_id
            scorers[focus] = (rm.to(device).eval().requires_grad_(False), rm_tokenizer)
    value_source = config.helpfulness_rm or config.safety_rm
    if value_source:
        value_tokenizer = scorers["helpfulness" if config.helpfulness_rm else "safety"][1]
        if value_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ValueError(f"{value_source}: a value model initialised from a reward model reads the "
                             "policy's tokens, so both need the same tokenizer")
    value = build_value_model(reward_model=value_source, policy=config.policy, dtype=torch.float32)
    reward_fn = load_reward_fn(config.reward_fn) if config.reward_fn else None

    _, PolicyAndValue = _modules()
    model = PolicyAndValue(policy, value)
    model.eval()  # dropout off: the first gradient step's probability ratio must be exactly 1
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in trained if p.ndim >= 2], "weight_decay": config.weight_decay},
         {"params": [p for p in trained if p.ndim < 2], "weight_decay": 0.0}],
        lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_epsilon)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    save_dtype = config.save_dtype if config.save_dtype != "auto" else (
        getattr(AutoConfig.from_pretrained(config.policy), "dtype", None) or "float32")
    save_dtype = getattr(torch, save_dtype) if isinstance(save_dtype, str) else save_dtype

    eos = policy.generation_config.eos_token_id
    eos_ids = ((set(eos) if isinstance(eos, list) else {eos}) | {tokenizer.eos_token_id}) - {None}
    # Everything explicit: unset fields would be filled from the checkpoint's generation config.
    generation = GenerationConfig(
        do_sample=True, temperature=config.temperature, top_p=config.top_p, top_k=0, repetition_penalty=1.0,
        max_new_tokens=config.max_new_tokens, pad_token_id=pad_id, eos_token_id=sorted(eos_ids))

    # --- data -----------------------------------------------------------------------------------
    train_prompts = read_prompts(config.prompts)
    eval_prompts = read_prompts(config.eval_prompts) if config.eval_prompts else []
    train_ids, truncated = encode_prompts(tokenizer, train_prompts, max_length=config.max_prompt_length)
    eval_ids, _ = encode_prompts(tokenizer, eval_prompts, max_length=config.max_prompt_length)
    say("data", prompts=len(train_prompts), safety_prompts=sum(p["is_safety"] for p in train_prompts),
        eval_prompts=len(eval_prompts), truncated_prompts=truncated, processes=world, bf16=use_bf16,
        reward="reward_fn" if reward_fn else "+".join(scorers), value_init=value_source or "policy",
        config={k: v for k, v in dataclasses.asdict(config).items() if k != "extra"})

    def sample(prompt_ids: list[list[int]]) -> list[list[int]]:
        """Sampled responses, each cut after its first end-of-sequence token."""
        responses = []
        for start in range(0, len(prompt_ids), config.rollout_batch_size):
            chunk = prompt_ids[start:start + config.rollout_batch_size]
            width = max(map(len, chunk))
            input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            attention = torch.zeros_like(input_ids)
            for i, ids in enumerate(chunk):
                input_ids[i, width - len(ids):], attention[i, width - len(ids):] = torch.tensor(ids), 1
            with torch.no_grad(), accelerator.autocast():
                generated = unwrapped.policy.generate(input_ids=input_ids.to(device),
                                                      attention_mask=attention.to(device),
                                                      generation_config=generation)
            for row in generated[:, width:].tolist():
                end = next((i for i, token in enumerate(row) if token in eos_ids), len(row) - 1)
                responses.append(row[:end + 1])
        return responses

    def score(prompts: list[dict], texts: list[str]) -> dict:
        """Raw scores of this process's rollouts: per RM, and the combined LOGIT(R_c) as "raw"."""
        if reward_fn:
            return {"raw": [float(reward_fn(p["messages"], text)) for p, text in zip(prompts, texts)]}
        conversations = [p["messages"] + [{"role": "assistant", "content": text}]
                         for p, text in zip(prompts, texts)]
        scores = {focus: score_conversations(rm, rm_tokenizer, conversations, max_length=config.rm_max_length,
                                             batch_size=config.rollout_batch_size)
                  for focus, (rm, rm_tokenizer) in scorers.items()}
        h, s = scores.get("helpfulness"), scores.get("safety")
        scores["raw"] = [
            rewards.combined_raw(helpfulness=h[i] if h else None, safety=s[i] if s else None,
                                 is_safety_prompt=p["is_safety"], threshold=config.safety_threshold)
            for i, p in enumerate(prompts)]
        return scores

    def whitened_rewards(prompts: list[dict], scores: dict) -> list[float]:
        """WHITEN over the whole iteration's batch (all processes); this process's share back."""
        if reward_fn:
            everything = rewards.whiten(gather_object(scores["raw"]))
        else:
            everything = rewards.combined_rewards(
                helpfulness_scores=gather_object(scores["helpfulness"]) if "helpfulness" in scores else None,
                safety_scores=gather_object(scores["safety"]) if "safety" in scores else None,
                is_safety_prompt=gather_object([p["is_safety"] for p in prompts]),
                threshold=config.safety_threshold)
        return everything[rank * len(prompts):(rank + 1) * len(prompts)]

    def global_sums(*values: float) -> list[float]:
        return accelerator.reduce(torch.tensor(values, dtype=torch.float64, device=device), "sum").tolist()

    def whiten_across(values, mask):
        """masked_whiten, with the mean and variance of all processes' tokens."""
        if world == 1:
            return masked_whiten(values, mask)
        total, squares, n = global_sums(float((values * mask).sum()), float((values ** 2 * mask).sum()),
                                        float(mask.sum()))
        mean = total / n
        var = (squares - n * mean ** 2) / max(n - 1, 1)
        return (values - mean) / (var + 1e-8) ** 0.5 * mask

    def tempered_logprobs(logits, labels):
        return logprobs_from_logits(logits.float() / config.temperature, labels)

    def forward_no_grad(prompt_ids, responses):
        """Per rollout: log π_old, log π_0 and V_old over its response tokens (1-D tensors)."""
        logprobs, ref_logprobs, values = [], [], []
        size = config.micro_batch_size  # the logits over the vocabulary are what takes the memory
        for start in range(0, len(responses), size):
            chunk = responses[start:start + size]
            input_ids, attention, positions, _, width = collate(prompt_ids[start:start + size], chunk,
                                                                pad_id=pad_id)
            input_ids, attention, positions = (x.to(device) for x in (input_ids, attention, positions))
            labels = input_ids[:, -width:]
            with torch.no_grad(), accelerator.autocast():
                logits, value_estimates = unwrapped(input_ids, attention, positions, width)
                policy_lp = tempered_logprobs(logits, labels)
                del logits
                ref_logits = reference(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                                       logits_to_keep=width + 1, use_cache=False).logits[:, :-1]
                ref_lp = tempered_logprobs(ref_logits, labels)
                del ref_logits
            for i, response in enumerate(chunk):
                logprobs.append(policy_lp[i, :len(response)].cpu())
                ref_logprobs.append(ref_lp[i, :len(response)].cpu())
                values.append(value_estimates[i, :len(response)].float().cpu())
        return logprobs, ref_logprobs, values

    def optimise(prompt_ids, responses, mask, old_logprobs, old_values, advantages, returns) -> dict:
        """PPO epochs over shuffled mini-batches, one gradient step each, accumulated over
        micro-batches so that each step's loss is the mini-batch's token mean."""
        totals = dict.fromkeys(LOSS_METRICS, 0.0)
        steps = 0
        for _ in range(config.ppo_epochs):
            for mini in torch.randperm(len(responses), generator=shuffle).split(local_mini):
                mini_tokens = float(mask[mini].sum())
                micros = mini.split(config.micro_batch_size)
                optimizer.zero_grad(set_to_none=True)
                for k, micro in enumerate(micros):
                    idx = micro.tolist()
                    input_ids, attention, positions, micro_mask, width = collate(
                        [prompt_ids[i] for i in idx], [responses[i] for i in idx], pad_id=pad_id)
                    input_ids, attention, positions, micro_mask = (
                        x.to(device) for x in (input_ids, attention, positions, micro_mask))
                    old_lp, old_v, adv, ret = (x[micro, :width].to(device)
                                               for x in (old_logprobs, old_values, advantages, returns))
                    share = float(micro_mask.sum()) / mini_tokens
                    syncing = contextlib.nullcontext() if k == len(micros) - 1 else accelerator.no_sync(model)
                    with syncing:
                        with accelerator.autocast():
                            logits, values = model(input_ids, attention, positions, width)
                        logprobs = tempered_logprobs(logits, input_ids[:, -width:])
                        pg_loss, clip_frac, approx_kl = policy_loss(logprobs, old_lp, adv, micro_mask,
                                                                    config.cliprange)
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
                optimizer.step()
                steps += 1
        return {key: total / max(steps, 1) for key, total in totals.items()} | {"gradient_steps": steps}

    def evaluate(step: int) -> float:
        """Mean raw reward of one sample per held-out prompt (sampled under a fixed seed)."""
        mine = list(range(rank, len(eval_prompts), world))
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(config.seed + 1_000_003)
            responses = sample([eval_ids[i] for i in mine]) if mine else []
        texts = [tokenizer.decode(r, skip_special_tokens=True) for r in responses]
        raw = score([eval_prompts[i] for i in mine], texts)["raw"] if mine else []
        total, n, tokens = global_sums(sum(raw), len(raw), sum(map(len, responses)))
        record = {"step": step, "eval_reward": total / max(n, 1), "eval_response_length": tokens / max(n, 1)}
        say("eval", **record)
        if accelerator.is_main_process:
            with open(out / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
        return record["eval_reward"]

    # --- the loop -------------------------------------------------------------------------------
    order = prompt_order(len(train_prompts), config.seed)
    shuffle = torch.Generator().manual_seed(config.seed)
    history, evaluations = [], []
    best, stale, step = {"step": None, "eval_reward": None}, 0, 0
    if eval_prompts:
        evaluations.append({"step": 0, "eval_reward": evaluate(0)})

    for step in range(1, config.iterations + 1):
        started = time.perf_counter()
        batch = [next(order) for _ in range(config.batch_size)][rank * local_batch:(rank + 1) * local_batch]
        prompts, prompt_ids = [train_prompts[i] for i in batch], [train_ids[i] for i in batch]
        responses = sample(prompt_ids)
        texts = [tokenizer.decode(r, skip_special_tokens=True) for r in responses]
        scores = score(prompts, texts)
        whitened = whitened_rewards(prompts, scores)
        old_logprobs, ref_logprobs, old_values = forward_no_grad(prompt_ids, responses)
        width = max(map(len, responses))
        mask = pad_right([torch.ones(len(r)) for r in responses], width)
        old_logprobs, ref_logprobs, old_values = (pad_right(x, width) for x in (old_logprobs, ref_logprobs,
                                                                                old_values))
        kl = kl_per_token(old_logprobs, ref_logprobs) * mask
        token_rewards = kl_penalised_rewards(torch.tensor(whitened), kl, mask, config.kl_coef)
        advantages, returns = gae(token_rewards, old_values, mask, config.gamma, config.lam)
        if config.whiten_advantages:
            advantages = whiten_across(advantages, mask)
        rollout_seconds = time.perf_counter() - started

        started = time.perf_counter()
        losses = optimise(prompt_ids, responses, mask, old_logprobs, old_values, advantages, returns)
        train_seconds = time.perf_counter() - started

        # --- metrics, over all processes --------------------------------------------------------
        raw, sequence_kl = scores["raw"], kl.sum(1)
        response_tokens = float(mask.sum())
        (raw_sum, raw_squares, whitened_sum, kl_sum, response_tokens, sequence_tokens, n, helpfulness_sum,
         safety_sum, *loss_sums) = global_sums(
            sum(raw), sum(x * x for x in raw), sum(whitened), float(sequence_kl.sum()), response_tokens,
            response_tokens + sum(map(len, prompt_ids)), len(raw),
            *(sum(scores[focus]) if focus in scores else 0.0 for focus in ("helpfulness", "safety")),
            *(losses[name] for name in LOSS_METRICS))
        mean_raw = raw_sum / n
        record = {
            "step": step, "max_steps": config.iterations,
            "reward": mean_raw, "reward_std": max(raw_squares / n - mean_raw ** 2, 0.0) ** 0.5,
            "reward_whitened": whitened_sum / n,
            "kl": kl_sum / n, "non_score_reward": -config.kl_coef * kl_sum / n,
            **{name: total / world for name, total in zip(LOSS_METRICS, loss_sums)},
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
        history.append(record)
        samples = [{"prompt": prompts[i]["messages"][-1]["content"], "response": texts[i],
                    "is_safety": prompts[i]["is_safety"], "reward": raw[i], "reward_whitened": whitened[i],
                    "kl": float(sequence_kl[i])}
                   for i in range(min(config.samples_per_iteration, len(prompts)))]
        say("log", **record)
        say("samples", step=step, rows=samples)
        if accelerator.is_main_process:
            with open(out / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
            with open(out / "samples.jsonl", "a") as handle:
                handle.writelines(json.dumps({"step": step, **row}) + "\n" for row in samples)

        # --- held-out evaluation: keep the best policy, stop when it no longer improves ---------
        if eval_prompts and (step % config.eval_every == 0 or step == config.iterations):
            reward = evaluate(step)
            evaluations.append({"step": step, "eval_reward": reward})
            if best["eval_reward"] is None or reward > best["eval_reward"]:
                best, stale = {"step": step, "eval_reward": reward}, 0
                save_policy(accelerator, model, tokenizer, out, dtype=save_dtype)
            else:
                stale += 1
                if config.early_stop_patience and stale >= config.early_stop_patience:
                    say("early_stop", step=step, best_step=best["step"], best_eval_reward=best["eval_reward"])
                    break

    if best["step"] is None:
        save_policy(accelerator, model, tokenizer, out, dtype=save_dtype)
    last = history[-1] if history else {}
    summary = {
        "steps": step, "iterations": config.iterations, "bf16": use_bf16, "processes": world,
        "reward_first": history[0]["reward"] if history else None, "reward_last": last.get("reward"),
        "kl_last": last.get("kl"), "best_step": best["step"], "best_eval_reward": best["eval_reward"],
        "rollout_seconds": round(sum(h["rollout_seconds"] for h in history), 2),
        "train_seconds": round(sum(h["train_seconds"] for h in history), 2),
        **{key: last[key] for key in ("rollout_tokens_per_second", "train_tokens_per_second") if key in last},
    }
    if accelerator.is_main_process:
        (out / "tandem_job.json").write_text(json.dumps(
            {"job": "ppo", "config": dataclasses.asdict(config), "seed": config.seed,
             "step": best["step"] if best["step"] is not None else step, "metrics": summary, "last": last,
             "evaluations": evaluations}, indent=2) + "\n")
    say("done", **summary)
    accelerator.wait_for_everyone()
    return {"summary": summary, "history": history, "evaluations": evaluations}


def parse(argv: list[str]) -> PPOJobConfig:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, PPOJobConfig, required=("prompts", "policy", "out"))
    return PPOJobConfig(**vars(parser.parse_args(argv)))


if __name__ == "__main__":
    main(parse(sys.argv[1:]))
