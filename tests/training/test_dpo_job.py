"""The DPO job on CPU with a tiny Llama: the strength rules, and a run that learns its pairs."""

import json

import pytest

from training.jobs.dpo import DPOJobConfig, main, pair_weight, parse, read_pairs


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def pair(i, strength, focus="helpfulness"):
    # The chosen answer always says "Certainly", the rejected one never: a property the tiny model learns.
    return {"prompt": [{"role": "user", "content": f"Question number {i}?"}],
            "chosen": [{"role": "assistant", "content": f"Certainly, number {i} is fine."}],
            "rejected": [{"role": "assistant", "content": f"No idea about {i} at all, sorry."}],
            "strength": strength, "focus": focus, "margin": None}


STRENGTHS = ["significantly_better", "better", "slightly_better", "negligibly_better"]


def test_the_strength_rules(tmp_path):
    rows = [pair(i, STRENGTHS[i % 4]) for i in range(8)] + [{**pair(8, None), "strength": None}]
    path = write(tmp_path / "train.jsonl", rows)
    pairs, weights, _, left_out = read_pairs(path, rule="drop_negligible")
    assert len(pairs) == 7 and left_out == {"negligibly_better": 2} and set(weights) == {1.0}
    pairs, weights, strengths, left_out = read_pairs(path, rule="weight")
    assert len(pairs) == 9 and not left_out
    assert weights[:4] == [1.0, 0.75, 0.5, 0.25] and weights[-1] == 1.0  # an import without a strength: 1
    assert read_pairs(path, rule="all")[1] == [1.0] * 9
    # Only the run's focus is scored on the held-out split.
    mixed = write(tmp_path / "eval.jsonl", [pair(0, "better"), pair(1, "better", focus="safety")])
    assert read_pairs(mixed, rule="all", focus="safety")[3] == {"other_focus": 1}
    with pytest.raises(ValueError):
        pair_weight({}, "loudest")
    with pytest.raises(ValueError, match="two assistant answers"):
        read_pairs(write(tmp_path / "bad.jsonl", [{"prompt": "Hi", "chosen": [], "rejected": "x"}]), rule="all")


def test_a_dpo_run_moves_the_implicit_reward_toward_the_chosen(tiny_model_dir, tmp_path):
    train = write(tmp_path / "train.jsonl", [pair(i, STRENGTHS[i % 3]) for i in range(24)]
                  + [pair(99, "negligibly_better")])
    held_out = write(tmp_path / "eval.jsonl", [pair(100 + i, STRENGTHS[i % 4]) for i in range(8)]
                     + [pair(200, "better", focus="safety")])
    out = tmp_path / "out"
    config = parse(["--train", train, "--eval", held_out, "--focus", "helpfulness", "--base", str(tiny_model_dir),
                    "--out", str(out), "--learning-rate", "5e-3", "--epochs", "3", "--per-device-batch-size", "8",
                    "--gradient-accumulation-steps", "1", "--max-length", "96", "--gradient-checkpointing", "no",
                    "--eval-steps", "3", "--beta", "0.1"])
    assert isinstance(config, DPOJobConfig) and config.strength_rule == "drop_negligible"
    result = main(config)
    summary, evaluation = result["summary"], result["eval"]
    assert summary["train_pairs"] == 24 and summary["left_out"] == {"negligibly_better": 1}
    assert summary["steps"] == 9
    # The held-out pairs of the focus (8, the safety one left out), scored by DPO's implicit reward.
    assert evaluation["pairs"] == 8 and evaluation["accuracy"] >= 0.75 and evaluation["margin"] > 0
    assert set(evaluation["per_strength"]) == set(STRENGTHS)
    written = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "eval.json", "tandem_job.json",
            "metrics.jsonl", "generation_config.json"} <= written
    assert json.loads((out / "generation_config.json").read_text())["do_sample"] is True
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    curve = [line["eval_rewards/accuracies"] for line in lines if "eval_rewards/accuracies" in line]
    assert len(curve) >= 3  # every 3 steps and at the end: a curve, not a point
    assert json.loads((out / "tandem_job.json").read_text())["job"] == "dpo"


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_dpo_on_smollm2_prefers_the_held_out_chosen_answers(tmp_path):
    """The real default model: a few steps of DPO on its top blocks, and the held-out pairs it never
    saw are ranked by the implicit reward the way the annotators ranked them."""
    from django.conf import settings
    from django.core.management import call_command

    call_command("prepare_default_model")
    train = write(tmp_path / "train.jsonl", [pair(i, STRENGTHS[i % 3]) for i in range(32)])
    held_out = write(tmp_path / "eval.jsonl", [pair(100 + i, STRENGTHS[i % 3]) for i in range(12)])
    config = parse(["--train", train, "--eval", held_out, "--base", str(settings.DEFAULT_MODEL_DIR),
                    "--out", str(tmp_path / "out"), "--learning-rate", "2e-5", "--epochs", "1",
                    "--per-device-batch-size", "4", "--gradient-accumulation-steps", "2", "--max-length", "128",
                    "--gradient-checkpointing", "no", "--trainable-layers", "4", "--eval-steps", "2",
                    "--bf16", "no"])
    result = main(config)
    evaluation = result["eval"]
    assert result["summary"]["steps"] == 4 and evaluation["pairs"] == 12
    assert evaluation["accuracy"] >= 0.75 and evaluation["margin"] > 0, evaluation
