"""The PPO job on CPU with the tiny Llama: it raises a reward while staying near the reference, runs
alone, and runs on real (tiny) reward models with the value model initialised from one."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.jobs.ppo import PPOJobConfig, main, parse, read_prompts

ROOT = Path(__file__).resolve().parents[2]
REWARD_FN = "tests.training.test_ppo:newline_share"
TOPICS = ["tea", "rain", "maps", "bread", "chess", "music", "rivers", "stars"]


def newline_share(prompt_messages, response_text):
    """The tests' reward (`--reward-fn tests.training.test_ppo:newline_share`): the share of the
    response's characters that are newlines.

    Why newlines: the tiny random Llama is close to uniform over its 49k tokens at temperature 1, so
    no particular token would ever be sampled and a reward on it would never be seen. At temperature
    0.1 it mostly repeats its last token, and every prompt ends in a newline (the chat template's
    `<|im_start|>assistant\\n`), so newlines are sampled often enough to learn from (about 0.5 % of
    the characters at first). Kept free of heavy imports: the job imports this module.
    """
    return response_text.count("\n") / max(len(response_text), 1)


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def chat_prompts(n=8):
    return [{"messages": [{"role": "user", "content": f"Tell me about {TOPICS[i % len(TOPICS)]}."}],
             "is_safety": i % 3 == 0} for i in range(n)]


def test_defaults_are_the_papers_and_booleans_parse():
    config = parse(["--prompts", "p.jsonl", "--policy", "m", "--out", "o", "--whiten-advantages", "false"])
    assert (config.learning_rate, config.adam_beta1, config.adam_beta2) == (1e-6, 0.9, 0.95)
    assert (config.adam_epsilon, config.weight_decay, config.max_grad_norm) == (1e-5, 0.1, 1.0)
    assert (config.cliprange, config.cliprange_value, config.kl_coef) == (0.2, 0.2, 0.01)
    assert (config.batch_size, config.mini_batch_size, config.ppo_epochs) == (512, 64, 1)
    assert (config.gamma, config.lam, config.bf16) == (1.0, 0.95, "auto")
    assert config.whiten_advantages is False


def test_prompts_are_read_in_both_shapes_and_must_end_with_a_user_turn(tmp_path):
    rows = [{"prompt": "Hello?"}, {"messages": [{"role": "user", "content": "How?"}], "is_safety": True}]
    assert read_prompts(write(tmp_path / "p.jsonl", rows)) == [
        {"messages": [{"role": "user", "content": "Hello?"}], "is_safety": False},
        {"messages": [{"role": "user", "content": "How?"}], "is_safety": True}]
    bad = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}]
    with pytest.raises(ValueError, match="user turn"):
        read_prompts(write(tmp_path / "bad.jsonl", bad))


def test_a_reward_comes_from_a_function_or_from_reward_models_not_both(tmp_path):
    with pytest.raises(ValueError, match="either"):
        main(PPOJobConfig(prompts="p", policy="m", out=str(tmp_path), reward_fn=REWARD_FN,
                          helpfulness_rm="rm"))
    with pytest.raises(ValueError, match="either"):
        main(PPOJobConfig(prompts="p", policy="m", out=str(tmp_path)))


def test_ppo_raises_the_reward_while_the_kl_to_the_reference_stays_bounded(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    # Learning rate 300× the paper's so that five iterations of 32 rollouts show it on CPU; β raised
    # from 0.01 to 0.05 accordingly. Temperature 0.1: see newline_share.
    config = PPOJobConfig(
        prompts=write(tmp_path / "prompts.jsonl", chat_prompts()), policy=str(tiny_model_dir),
        out=str(tmp_path / "ppo"), reward_fn=REWARD_FN, iterations=5, batch_size=32, mini_batch_size=8,
        micro_batch_size=8, rollout_batch_size=32, max_new_tokens=8, temperature=0.1, learning_rate=3e-4,
        kl_coef=0.05, seed=0)
    history = main(config)["history"]
    rewards = [entry["reward"] for entry in history]
    first, last = sum(rewards[:2]) / 2, sum(rewards[-2:]) / 2
    # Measured on a 2-core box: 0.009, 0.035, 0.023, 0.096, 0.365 (first two 0.022, last two 0.23; seeds 1
    # and 2 gave 0.021 → 0.20 and 0.020 → 0.22).
    assert last >= first + 0.03 and last >= 3 * first, rewards
    # The k1 KL per response token stays under 1 nat (measured: 0, 0.08, 0.15, 0.24, 0.59; at most 0.63
    # with the other seeds); the first iteration samples from the reference itself.
    kl_per_token = [entry["kl"] / entry["response_length"] for entry in history]
    assert kl_per_token[0] == pytest.approx(0.0, abs=1e-6)
    assert max(kl_per_token) < 1.0, kl_per_token
    out = tmp_path / "ppo"
    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[name], after[name]) for name in before), "the policy did not change"
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged] == [1, 2, 3, 4, 5]


def test_the_job_runs_alone_prints_json_lines_and_writes_a_servable_checkpoint(tiny_model_dir, tmp_path):
    prompts = [{"prompt": f"Tell me about {topic}."} for topic in TOPICS]
    held_out = [{"prompt": "Tell me about clouds.", "is_safety": False}, {"prompt": "And bees?"}]
    out = tmp_path / "ppo"
    command = [sys.executable, "-m", "training.jobs.ppo", "--prompts", write(tmp_path / "p.jsonl", prompts),
               "--policy", str(tiny_model_dir), "--out", str(out), "--reward-fn", REWARD_FN,
               "--iterations", "2", "--batch-size", "8", "--mini-batch-size", "4", "--micro-batch-size", "2",
               "--rollout-batch-size", "8", "--max-new-tokens", "8", "--learning-rate", "1e-4",
               "--eval-prompts", write(tmp_path / "e.jsonl", held_out), "--eval-every", "1", "--seed", "3"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # Other libraries print too; the job's own lines are JSON objects with an "event".
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"event"')]
    kinds = [event["event"] for event in events]
    assert kinds[0] == "data" and kinds[-1] == "done", kinds
    assert events[0]["prompts"] == 8 and events[0]["eval_prompts"] == 2
    assert events[0]["value_init"] == "policy"
    assert events[0]["config"]["batch_size"] == 8
    logs = [event for event in events if event["event"] == "log"]
    assert [entry["step"] for entry in logs] == [1, 2] and {entry["max_steps"] for entry in logs} == {2}
    for key in ("reward", "reward_whitened", "kl", "policy_loss", "value_loss", "entropy", "clip_frac",
                "approx_kl", "response_length", "rollout_seconds", "train_seconds",
                "rollout_tokens_per_second", "train_tokens_per_second"):
        assert all(isinstance(entry[key], float) for entry in logs), key
    # Two mini-batches of four per iteration, each accumulated from two micro-batches of two.
    assert {entry["gradient_steps"] for entry in logs} == {2}
    samples = [event for event in events if event["event"] == "samples"]
    assert len(samples) == 2 and len(samples[0]["rows"]) == 4
    assert set(samples[0]["rows"][0]) >= {"prompt", "response", "reward"}
    assert samples[0]["rows"][0]["prompt"].startswith("Tell me about")
    assert [event["step"] for event in events if event["event"] == "eval"] == [0, 1, 2]

    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert (out / "tokenizer.json").is_file()
    assert json.loads((out / "generation_config.json").read_text())["do_sample"] is True
    job = json.loads((out / "tandem_job.json").read_text())
    assert job["job"] == "ppo" and job["seed"] == 3 and job["config"]["reward_fn"] == REWARD_FN
    assert job["metrics"]["steps"] == 2 and job["step"] == job["metrics"]["best_step"] in (1, 2)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2 + 3  # logs and evaluations
    assert len((out / "samples.jsonl").read_text().splitlines()) == 8
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out).config.vocab_size == 49152


@pytest.fixture(scope="module")
def tiny_reward_models(tiny_model_dir, tmp_path_factory):
    """Two tiny random reward models (helpfulness, safety): the tiny Llama with a random scalar head.

    A random model scores every conversation about the same (each ends in the same tokens), so the
    safety head is turned to score high: σ(R_s) stays above 0.15 and the combined reward takes the
    safety score exactly on the adversarial prompts, the helpfulness score on the others (the
    threshold itself is tested in test_rewards.py)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    probe = torch.tensor([tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], return_dict=False)])
    paths = {}
    for seed, focus in enumerate(("helpfulness", "safety"), start=1):
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
        torch.manual_seed(seed)
        torch.nn.init.normal_(model.score.weight, std=0.5)
        with torch.no_grad():
            if focus == "safety" and model(input_ids=probe).logits.item() < 0:
                model.score.weight.neg_()
        model.config.pad_token_id = tokenizer.pad_token_id
        paths[focus] = tmp_path_factory.mktemp(f"rm-{focus}")
        model.save_pretrained(paths[focus])
        tokenizer.save_pretrained(paths[focus])
    return paths


def test_the_value_model_reads_the_reward_models_score_at_every_position(tiny_model_dir, tiny_reward_models):
    import torch
    from transformers import AutoModelForSequenceClassification

    from training.jobs.ppo_models import build_value_model

    rm = AutoModelForSequenceClassification.from_pretrained(tiny_reward_models["helpfulness"], num_labels=1)
    value = build_value_model(reward_model=str(tiny_reward_models["helpfulness"]), policy=str(tiny_model_dir),
                              dtype=torch.float32)
    input_ids = torch.tensor([[1, 9690, 198, 2683, 359, 253], [1, 30, 31, 32, 33, 34]])
    with torch.no_grad():
        values, scores = value(input_ids), rm(input_ids=input_ids).logits[:, 0]
        prefix_scores = rm(input_ids=input_ids[:, :4]).logits[:, 0]
    assert values.shape == (2, 6)
    # The value at a position is the RM's score of the sequence up to there.
    assert torch.allclose(values[:, -1], scores, atol=1e-5)
    assert torch.allclose(values[:, 3], prefix_scores, atol=1e-5)
    fresh = build_value_model(reward_model="", policy=str(tiny_model_dir), dtype=torch.float32)
    with torch.no_grad():
        assert torch.count_nonzero(fresh(input_ids)) == 0  # a zero-initialised head on the policy's decoder


def test_ppo_on_reward_models_scores_with_the_combined_reward(tiny_model_dir, tiny_reward_models, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.jobs import rewards
    from training.jobs.common import score_conversations

    prompts = [{"prompt": f"Tell me about {topic}.", "is_safety": i % 2 == 0}
               for i, topic in enumerate(TOPICS)]
    config = PPOJobConfig(
        prompts=write(tmp_path / "p.jsonl", prompts), policy=str(tiny_model_dir), out=str(tmp_path / "ppo"),
        helpfulness_rm=str(tiny_reward_models["helpfulness"]), safety_rm=str(tiny_reward_models["safety"]),
        iterations=2, batch_size=8, mini_batch_size=8, micro_batch_size=4, rollout_batch_size=8,
        max_new_tokens=6, learning_rate=1e-3, samples_per_iteration=8, seed=1)
    history = main(config)["history"]
    first = history[0]
    # One mini-batch per iteration: its gradient step starts from the rollout policy, so the ratio is
    # exactly 1 (the rollout's and the training's forward passes agree, micro-batching included).
    assert first["approx_kl"] == pytest.approx(0.0, abs=1e-6) and first["clip_frac"] == 0.0
    assert first["kl"] == pytest.approx(0.0, abs=1e-5) and history[1]["kl"] != 0.0
    assert {"score_helpfulness", "score_safety"} <= set(first)
    assert first["reward_whitened"] == pytest.approx(0.0, abs=1e-6)  # whitened over the batch

    # Each logged reward is LOGIT(R_c) of the two RMs' scores on the sampled conversation.
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    models = {focus: AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).eval()
              for focus, path in tiny_reward_models.items()}
    rows = [json.loads(line) for line in (tmp_path / "ppo" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 16
    conversations = [[{"role": "user", "content": row["prompt"]},
                      {"role": "assistant", "content": row["response"]}] for row in rows]
    scores = {focus: score_conversations(model, tokenizer, conversations, max_length=1024)
              for focus, model in models.items()}
    expected = [rewards.combined_raw(helpfulness=h, safety=s, is_safety_prompt=r["is_safety"])
                for r, h, s in zip(rows, scores["helpfulness"], scores["safety"])]
    assert [r["reward"] for r in rows] == pytest.approx(expected, abs=1e-4)
    assert all(rewards.sigmoid(s) > 0.15 for s in scores["safety"])
    for row, h, s in zip(rows, scores["helpfulness"], scores["safety"]):
        assert row["reward"] == pytest.approx(s if row["is_safety"] else h, abs=1e-4)
    assert {row["is_safety"] for row in rows} == {True, False}, "both reward models should have been used"
