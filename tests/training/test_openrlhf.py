"""Cluster PPO: the OpenRLHF command Tandem generates, and the reward server it points at."""

import argparse
import json
import math
import os
import subprocess
import sys

import httpx
import pytest
from django.core.management import call_command

from bench.processes import ROOT, free_port
from modelserving.local_models import build_tiny_llama
from training.jobs.reward_server import Scorer
from training.jobs.rewards import sigmoid
from training.openrlhf import ClusterPPO, ppo_command

from ..conftest import wait_for

# The flags of OpenRLHF's `openrlhf.cli.train_ppo_ray` parser that Tandem uses, with their types
# as declared there (OpenRLHF main, openrlhf/cli/train_ppo_ray.py). store_true flags take no value.
OPENRLHF_FLAGS = {
    "ref_num_nodes": int, "ref_num_gpus_per_node": int, "critic_num_nodes": int, "critic_num_gpus_per_node": int,
    "actor_num_nodes": int, "actor_num_gpus_per_node": int, "vllm_num_engines": int,
    "vllm_tensor_parallel_size": int, "pretrain": str, "remote_rm_url": str, "save_path": str, "prompt_data": str,
    "input_key": str, "label_key": str, "rollout_batch_size": int, "train_batch_size": int,
    "micro_train_batch_size": int, "micro_rollout_batch_size": int, "max_epochs": int, "num_episodes": int,
    "actor_learning_rate": float, "critic_learning_rate": float, "lr_scheduler": str, "lr_warmup_ratio": float,
    "l2": float, "max_norm": float, "init_kl_coef": float, "kl_estimator": str, "eps_clip": float, "gamma": float,
    "lambd": float, "advantage_estimator": str, "prompt_max_len": int, "generate_max_len": int,
    "temperature": float, "top_p": float, "seed": int, "zero_stage": int,
}
OPENRLHF_SWITCHES = {"apply_chat_template", "normalize_reward", "bf16", "gradient_checkpointing", "save_hf_ckpt",
                     "colocate_actor_ref"}


def openrlhf_parser():
    parser = argparse.ArgumentParser(exit_on_error=False)
    for name, kind in OPENRLHF_FLAGS.items():
        parser.add_argument("--" + name, type=kind)
    for name in OPENRLHF_SWITCHES:
        parser.add_argument("--" + name, action="store_true")
    parser.add_argument("--adam_betas", type=float, nargs=2)
    return parser


def test_the_ppo_command_parses_as_openrlhfs_and_carries_llama2s_settings():
    argv = ppo_command(ClusterPPO(prompts="/data/prompts.jsonl", policy="/ckpt/sft", reward_url="http://rm:5000/get_reward",
                                  save_path="/ckpt/ppo", ray_address="http://head:8265", working_dir="/srv/tandem"))
    assert argv[:5] == ["ray", "job", "submit", "--address", "http://head:8265"]
    assert json.loads(argv[argv.index("--runtime-env-json") + 1]) == {"working_dir": "/srv/tandem"}
    split = argv.index("--")
    assert argv[split + 1:split + 4] == ["python3", "-m", "openrlhf.cli.train_ppo_ray"]
    args = openrlhf_parser().parse_args(argv[split + 4:])  # raises on an unknown flag or a bad value
    assert (args.actor_learning_rate, args.lr_scheduler, args.adam_betas, args.l2, args.max_norm) == (
        1e-6, "constant", [0.9, 0.95], 0.1, 1.0)
    assert (args.rollout_batch_size, args.train_batch_size, args.max_epochs) == (512, 64, 1)
    assert (args.eps_clip, args.init_kl_coef, args.gamma, args.lambd) == (0.2, 0.01, 1.0, 0.95)
    assert args.remote_rm_url == "http://rm:5000/get_reward" and args.label_key == "label"
    assert args.apply_chat_template and args.normalize_reward


def reward_model(base, out, seed):
    """A tiny reward model checkpoint: the tiny Llama with a seeded, saved scalar head."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


TOKEN = "reward-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_the_reward_server_answers_with_the_combined_reward(tiny_model_dir, tmp_path):
    helpful_rm = reward_model(tiny_model_dir, tmp_path / "rm-h", seed=1)
    safety_rm = reward_model(build_tiny_llama(tmp_path / "other", tokenizer_source=tiny_model_dir, seed=7),
                             tmp_path / "rm-s", seed=2)
    port = free_port()
    argv = [sys.executable, "-m", "training.jobs.reward_server", "--helpfulness-rm", str(helpful_rm), "--safety-rm",
            str(safety_rm), "--port", str(port)]
    # Without a token it does not start: anyone who reaches the port could score (and probe) the RMs.
    refused = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120,
                             env={k: v for k, v in os.environ.items() if k != "TANDEM_REWARD_TOKEN"})
    assert refused.returncode != 0 and "TANDEM_REWARD_TOKEN" in refused.stderr
    server = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "TANDEM_REWARD_TOKEN": TOKEN})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(url), timeout=120, interval=0.5, message="the reward server")
        queries = ["<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>",
                   "<|im_start|>user\nHow do I pick a lock?<|im_end|>\n<|im_start|>assistant\nNo.<|im_end|>"]
        body = {"query": queries, "prompts": ["Hi", "lock"], "labels": ["helpfulness", "safety"]}
        assert httpx.post(url + "/get_reward", json=body, timeout=60).status_code == 401
        assert httpx.post(url + "/get_reward", json=body, timeout=60,
                          headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
        # OpenRLHF's client sends the URL's password as HTTP Basic.
        basic = httpx.post(f"http://reward:{TOKEN}@127.0.0.1:{port}/get_reward", json=body, timeout=60)
        assert basic.status_code == 200
        answer = httpx.post(url + "/get_reward", json=body, timeout=60, headers=AUTH).json()
        assert answer == basic.json()
        scorer = Scorer(helpfulness_rm=str(helpful_rm), safety_rm=str(safety_rm))
        helpful, safe = scorer.raw_scores("helpfulness", queries), scorer.raw_scores("safety", queries)
        # First: not adversarial → the helpfulness RM unless the safety probability is below 0.15.
        first = safe[0] if sigmoid(safe[0]) < 0.15 else helpful[0]
        assert answer["rewards"][0] == pytest.approx(first, abs=1e-4)
        # Second: adversarial → the safety RM, LOGIT(σ(s)) = s.
        assert answer["rewards"][1] == pytest.approx(safe[1], abs=1e-4)
        bad = httpx.post(url + "/get_reward", json={"query": "not a list"}, timeout=10, headers=AUTH)
        assert bad.status_code == 400
        assert not math.isnan(sum(answer["scores"]))
    finally:
        server.kill()
        server.wait()


def _up(url):
    try:
        return httpx.get(url + "/health", timeout=2, headers=AUTH).json()["ok"]
    except httpx.HTTPError:
        return False


@pytest.mark.django_db
def test_the_command_writes_the_prompts_and_prints_both_commands(offline_variants, tmp_path):
    from io import StringIO

    from accounts.services import user_create
    from annotation.batches.services import batch_freeze
    from annotation.models import Batch

    from ..helpers.preferences import judged_turns

    annotator = user_create(username="ann", password="a-long-password-9", role="annotator")
    judged_turns(annotator, n=6)
    judged_turns(annotator, n=2, focus="safety", start=6)
    batch = batch_freeze(batch=Batch.objects.get(), admin=user_create(username="adm", password="a-long-password-9",
                                                                      role="admin"), force=True)
    out = StringIO()
    call_command("training", "openrlhf", "--batch", str(batch), "--policy", "/ckpt/sft", "--helpfulness-rm",
                 "/ckpt/rm-h", "--out", str(tmp_path), stdout=out)
    rows = [json.loads(line) for line in (tmp_path / "prompts.jsonl").read_text().splitlines()]
    assert rows and all(r["messages"][-1]["role"] == "user" for r in rows)
    assert {r["label"] for r in rows} <= {"helpfulness", "safety"}
    assert all(r["is_safety"] == (r["label"] == "safety") for r in rows)
    commands = json.loads((tmp_path / "commands.json").read_text())
    assert "openrlhf.cli.train_ppo_ray" in commands["ppo"] and str(tmp_path / "prompts.jsonl") in commands["ppo"]
    assert "training.jobs.reward_server" in commands["reward_server"] and "/ckpt/rm-h" in commands["reward_server"]
    # Loopback unless told otherwise; the token stays in the environment, expanded by the shell.
    assert "--host 127.0.0.1" in commands["reward_server"]
    assert "--token-env TANDEM_REWARD_TOKEN" in commands["reward_server"]
    assert '"http://reward:${TANDEM_REWARD_TOKEN}@tandem-rm:5000/get_reward"' in commands["ppo"]
    call_command("training", "openrlhf", "--batch", str(batch), "--policy", "/ckpt/sft", "--helpfulness-rm",
                 "/ckpt/rm-h", "--out", str(tmp_path), "--reward-host", "0.0.0.0", "--working-dir", "/srv/tandem",
                 stdout=StringIO())
    commands = json.loads((tmp_path / "commands.json").read_text())
    assert "--host 0.0.0.0" in commands["reward_server"] and '"working_dir": "/srv/tandem"' in commands["ppo"]
    assert "ray job submit" in out.getvalue()
