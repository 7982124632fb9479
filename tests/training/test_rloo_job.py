"""The online-RL job (TRL's RLOOTrainer on Tandem's combined reward) on CPU with tiny models."""

import json
from pathlib import Path

import pytest

from training.jobs.rewards import combined_rewards
from training.jobs.rloo import CombinedReward, main, parse, read_prompts


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


PROMPTS = [{"messages": [{"role": "user", "content": f"Tell me about topic {i}."}], "is_safety": i % 3 == 0}
           for i in range(6)] + [{"prompt": "Say hi."}]


def test_prompts_keep_their_safety_flag(tmp_path):
    rows = read_prompts(write(tmp_path / "p.jsonl", PROMPTS))
    assert len(rows) == 7 and rows[0]["is_safety"] and not rows[1]["is_safety"]
    assert rows[-1]["prompt"] == [{"role": "user", "content": "Say hi."}]
    with pytest.raises(ValueError, match="user's turn"):
        read_prompts(write(tmp_path / "bad.jsonl", [{"messages": [{"role": "assistant", "content": "x"}]}]))


def test_the_reward_is_the_whitened_combined_reward_of_both_models(tiny_model_dir, tmp_path):
    import torch

    config = parse(["--prompts", "x", "--base", str(tiny_model_dir), "--out", str(tmp_path),
                    "--helpfulness-rm", str(tiny_model_dir), "--safety-rm", str(tiny_model_dir)])
    reward = CombinedReward(config, device="cpu", dtype=torch.float32)
    prompts = [[{"role": "user", "content": f"Question {i}?"}] for i in range(4)]
    completions = [[{"role": "assistant", "content": text}] for text in ("Yes.", "No, never.", "Maybe so", "Sure")]
    flags = [False, True, False, True]
    logged = {}
    got = reward(prompts=prompts, completions=completions, is_safety=flags, log_metric=logged.__setitem__)
    scores = reward.scores([p + c for p, c in zip(prompts, completions)])
    # By hand from the RMs' raw scores: the 0.15 switch per answer, then whitened over the batch.
    assert got == pytest.approx(combined_rewards(helpfulness_scores=scores["helpfulness"],
                                                 safety_scores=scores["safety"], is_safety_prompt=flags))
    assert sum(got) == pytest.approx(0, abs=1e-6) and "raw_reward" in logged


def test_an_rloo_run_writes_a_policy_and_its_curves(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    config = parse(["--prompts", write(tmp_path / "prompts.jsonl", PROMPTS), "--base", str(tiny_model_dir),
                    "--helpfulness-rm", str(tiny_model_dir), "--out", str(out), "--steps", "2",
                    "--prompts-per-step", "2", "--k", "2", "--max-new-tokens", "8", "--learning-rate", "1e-3",
                    "--gradient-checkpointing", "no"])
    result = main(config)
    assert result["summary"]["steps"] == 2 and result["summary"]["answers"] == 8
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "reward" in line][:2] == [1, 2]
    assert all("kl" in line and "raw_reward" in line for line in lines if "reward" in line)
    assert {"model.safetensors", "tokenizer.json", "tandem_job.json", "generation_config.json"} <= {
        p.name for p in out.iterdir()}
    assert json.loads((out / "tandem_job.json").read_text())["job"] == "rloo"


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_rloo_moves_smollm2_on_a_reward_model(tiny_model_dir, tmp_path):
    """The real default model as the policy: a few RLOO steps on its top blocks change them, and
    every step records the raw reward and the KL to the start."""
    from django.conf import settings
    from django.core.management import call_command
    from safetensors.torch import load_file

    call_command("prepare_default_model")
    out = tmp_path / "out"
    config = parse(["--prompts", write(tmp_path / "prompts.jsonl", PROMPTS), "--base", str(settings.DEFAULT_MODEL_DIR),
                    "--helpfulness-rm", str(tiny_model_dir), "--safety-rm", str(tiny_model_dir), "--out", str(out),
                    "--steps", "3", "--prompts-per-step", "2", "--k", "2", "--max-new-tokens", "16",
                    "--learning-rate", "1e-5", "--trainable-layers", "2", "--gradient-checkpointing", "no",
                    "--bf16", "no"])
    result = main(config)
    assert result["summary"]["steps"] == 3 and result["data"]["safety_prompts"] == 2
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"kl"' in line]
    assert len(lines) == 3 and all(isinstance(line["kl"], float) and "raw_reward" in line for line in lines)
    before = load_file(str(next(Path(settings.DEFAULT_MODEL_DIR).glob("*.safetensors"))))
    after = load_file(str(out / "model.safetensors"))
    top = [name for name in after if ".layers." in name]
    last = max(int(name.split(".layers.")[1].split(".")[0]) for name in top)
    changed = [name for name in top if f".layers.{last}." in name and not (after[name] == before[name]).all()]
    assert changed, "the top block did not move"
