"""PPO's models and tensors (training/jobs/ppo.py): the value model, the policy and value under one
module, batching of [prompt | response] rows, loading everything a run needs and writing the
trained policy. No Django; torch and transformers are imported inside the functions."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import tokenizer_of


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


@dataclass
class PPOState:
    """Everything the steps of an iteration share, passed to them explicitly (ppo_steps.py)."""

    accelerator: Any
    model: Any  # PolicyAndValue after accelerator.prepare (DDP-wrapped under `accelerate launch`)
    optimizer: Any
    reference: Any  # π_0: frozen copy of the starting policy
    tokenizer: Any
    scorers: dict  # focus → (reward model, its tokenizer); empty with a reward function
    reward_fn: Callable | None  # (prompt_messages, response) → float, instead of reward models
    generation: Any  # GenerationConfig of the rollouts, every field explicit
    eos_ids: set
    shuffle: Any  # torch.Generator: the order of the mini-batches
    value_source: str  # the RM the value model starts from; "" for the policy's decoder

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def device(self):
        return self.accelerator.device

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def rank(self) -> int:
        return self.accelerator.process_index


def _reward_model(path: str, *, dtype, device):
    from transformers import AutoModelForSequenceClassification

    tokenizer = tokenizer_of(path)
    rm = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
    rm.config.pad_token_id = tokenizer.pad_token_id
    return rm.to(device).eval().requires_grad_(False), tokenizer


def load_state(config, accelerator, *, use_bf16: bool, reward_fn: Callable | None) -> PPOState:
    """The policy (float32, trained), π_0 and the reward models (frozen, bf16 where the hardware has
    it), the value model, one AdamW over policy and value, and the rollouts' generation config."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    device = accelerator.device
    tokenizer = tokenizer_of(config.policy)
    frozen_dtype = torch.bfloat16 if use_bf16 else torch.float32
    policy = AutoModelForCausalLM.from_pretrained(config.policy, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(config.policy, dtype=frozen_dtype)
    reference.to(device).eval().requires_grad_(False)
    scorers = {focus: _reward_model(path, dtype=frozen_dtype, device=device)
               for focus, path in (("helpfulness", config.helpfulness_rm), ("safety", config.safety_rm)) if path}
    value_source = config.helpfulness_rm or config.safety_rm
    if value_source:
        value_tokenizer = scorers["helpfulness" if config.helpfulness_rm else "safety"][1]
        if value_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ValueError(f"{value_source}: a value model initialised from a reward model reads the "
                             "policy's tokens, so both need the same tokenizer")
    value = build_value_model(reward_model=value_source, policy=config.policy, dtype=torch.float32)
    _, PolicyAndValue = _modules()
    model = PolicyAndValue(policy, value)
    model.eval()  # dropout off: the first gradient step's probability ratio must be exactly 1
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in trained if p.ndim >= 2], "weight_decay": config.weight_decay},
         {"params": [p for p in trained if p.ndim < 2], "weight_decay": 0.0}],
        lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_epsilon)
    model, optimizer = accelerator.prepare(model, optimizer)
    eos = policy.generation_config.eos_token_id
    eos_ids = ((set(eos) if isinstance(eos, list) else {eos}) | {tokenizer.eos_token_id}) - {None}
    # Everything explicit: unset fields would be filled from the checkpoint's generation config.
    generation = GenerationConfig(
        do_sample=True, temperature=config.temperature, top_p=config.top_p, top_k=0, repetition_penalty=1.0,
        max_new_tokens=config.max_new_tokens, pad_token_id=tokenizer.pad_token_id, eos_token_id=sorted(eos_ids))
    return PPOState(accelerator=accelerator, model=model, optimizer=optimizer, reference=reference,
                    tokenizer=tokenizer, scorers=scorers, reward_fn=reward_fn, generation=generation,
                    eos_ids=eos_ids, shuffle=torch.Generator().manual_seed(config.seed), value_source=value_source)


def save_dtype_of(config):
    """The dtype the policy is written in: the config's, or the starting checkpoint's."""
    import torch
    from transformers import AutoConfig

    dtype = config.save_dtype if config.save_dtype != "auto" else (
        getattr(AutoConfig.from_pretrained(config.policy), "dtype", None) or "float32")
    return getattr(torch, dtype) if isinstance(dtype, str) else dtype
