"""PPO at cluster scale on OpenRLHF with Ray, fed by Tandem.

Tandem writes the prompts (its batches' contexts, labelled with their focus) and serves its reward
models with the combined reward (`python -m training.jobs.reward_server`); OpenRLHF runs PPO
across the Ray cluster (`openrlhf.cli.train_ppo_ray`), scoring rollouts through
`--remote_rm_url`. The flags below are those of OpenRLHF's `train_ppo_ray` argument parser
(checked against OpenRLHF's main branch, 2026); the defaults are Llama 2's (LLAMA2.md): actor LR
1e-6 constant, AdamW β 0.9/0.95, weight decay 0.1, clipping 1.0, 512 prompts per rollout,
mini-batches of 64 with one gradient step each, clip 0.2, β (KL) 0.01, GAE γ 1, λ 0.95.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass


@dataclass
class ClusterPPO:
    prompts: str  # a JSONL path the cluster can read: {"messages": [...], "label": focus}
    policy: str  # the policy checkpoint (a path or hub name on the cluster)
    reward_url: str  # Tandem's reward server, its token as the URL's password: http://reward:$TOKEN@host:5000/get_reward
    save_path: str  # where OpenRLHF writes the trained policy (HF format)
    ray_address: str = "http://127.0.0.1:8265"
    working_dir: str = ""  # shipped to the Ray job when set (runtime_env)
    nodes: int = 1
    gpus_per_node: int = 8
    vllm_engines: int = 4
    vllm_tensor_parallel: int = 2
    rollout_batch_size: int = 512  # prompts per rollout (the paper's batch)
    train_batch_size: int = 64  # one optimiser step per mini-batch of 64
    micro_train_batch_size: int = 4
    micro_rollout_batch_size: int = 8
    max_epochs: int = 1
    episodes: int = 1
    actor_learning_rate: float = 1e-6
    critic_learning_rate: float = 9e-6
    kl_coef: float = 0.01  # β: 0.01 for 7B/13B, 0.005 for 34B/70B
    eps_clip: float = 0.2
    gamma: float = 1.0
    lambd: float = 0.95
    prompt_max_len: int = 1024
    generate_max_len: int = 1024
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0


def ppo_command(job: ClusterPPO) -> list[str]:
    """`ray job submit … -- python3 -m openrlhf.cli.train_ppo_ray …` as an argv list."""
    submit = ["ray", "job", "submit", "--address", job.ray_address]
    if job.working_dir:
        submit += ["--runtime-env-json", json.dumps({"working_dir": job.working_dir})]
    flags = {
        "--ref_num_nodes": job.nodes, "--ref_num_gpus_per_node": job.gpus_per_node,
        "--critic_num_nodes": job.nodes, "--critic_num_gpus_per_node": job.gpus_per_node,
        "--actor_num_nodes": job.nodes, "--actor_num_gpus_per_node": job.gpus_per_node,
        "--vllm_num_engines": job.vllm_engines, "--vllm_tensor_parallel_size": job.vllm_tensor_parallel,
        "--pretrain": job.policy, "--remote_rm_url": job.reward_url, "--save_path": job.save_path,
        "--prompt_data": job.prompts, "--input_key": "messages", "--label_key": "label",
        "--rollout_batch_size": job.rollout_batch_size, "--train_batch_size": job.train_batch_size,
        "--micro_train_batch_size": job.micro_train_batch_size,
        "--micro_rollout_batch_size": job.micro_rollout_batch_size,
        "--max_epochs": job.max_epochs, "--num_episodes": job.episodes,
        "--actor_learning_rate": job.actor_learning_rate, "--critic_learning_rate": job.critic_learning_rate,
        "--lr_scheduler": "constant", "--lr_warmup_ratio": 0.0, "--l2": 0.1, "--max_norm": 1.0,
        "--init_kl_coef": job.kl_coef, "--kl_estimator": "k1", "--eps_clip": job.eps_clip,
        "--gamma": job.gamma, "--lambd": job.lambd, "--advantage_estimator": "gae",
        "--prompt_max_len": job.prompt_max_len, "--generate_max_len": job.generate_max_len,
        "--temperature": job.temperature, "--top_p": job.top_p, "--seed": job.seed, "--zero_stage": 3,
    }
    argv = ["python3", "-m", "openrlhf.cli.train_ppo_ray"]
    for flag, value in flags.items():
        argv += [flag, str(value)]
    argv += ["--adam_betas", "0.9", "0.95", "--apply_chat_template", "--normalize_reward", "--bf16",
             "--gradient_checkpointing", "--save_hf_ckpt", "--colocate_actor_ref"]
    return [*submit, "--", *argv]


def reward_server_command(*, helpfulness_rm: str, safety_rm: str, port: int = 5000, host: str = "127.0.0.1",
                          token_env: str = "TANDEM_REWARD_TOKEN") -> list[str]:
    """The reward server's command: loopback unless ``host`` says otherwise; it reads its token from
    ``token_env`` (set it before running the command)."""
    argv = ["python", "-m", "training.jobs.reward_server", "--host", host, "--port", str(port),
            "--token-env", token_env]
    if helpfulness_rm:
        argv += ["--helpfulness-rm", helpfulness_rm]
    if safety_rm:
        argv += ["--safety-rm", safety_rm]
    return argv


def shell(argv: list[str]) -> str:
    """The argv as one shell line; a ``${VARIABLE}`` in an argument is left for the shell to expand
    (the reward token is never written into a command or a file)."""
    def quote(arg: str) -> str:
        if "${" in arg and "$(" not in arg and not any(c in arg for c in '"\\`'):
            return f'"{arg}"'
        return shlex.quote(arg)

    return " ".join(quote(arg) for arg in argv)
