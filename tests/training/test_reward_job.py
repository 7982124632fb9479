"""The reward-model job on CPU with a tiny Llama: the loss, the margin, and that it learns."""

import json
import math
import random
import subprocess
import sys

import pytest

from bench.processes import ROOT
from core.preference_scale import MARGIN_TABLES, margin_for
from training.jobs.reward import RewardJobConfig, main, tokenize_pairs


def ranking_loss(chosen: float, rejected: float, margin: float = 0.0) -> float:
    """The paper's loss for one pair, -log σ(r_chosen − r_rejected − m), written out (stable for large gaps)."""
    x = chosen - rejected - margin
    return math.log1p(math.exp(-x)) if x >= 0 else -x + math.log1p(math.exp(x))


def test_ranking_loss_matches_hand_computed_values():
    # -log σ(2 − 1 − m)
    assert ranking_loss(2.0, 1.0) == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-12)  # 0.3133
    assert ranking_loss(2.0, 1.0, 1.0) == pytest.approx(math.log(2), abs=1e-12)  # 0.6931
    assert ranking_loss(2.0, 1.0, 2 / 3) == pytest.approx(0.540306, abs=1e-6)  # log(1 + e^(-1/3))
    assert ranking_loss(0.0, 50.0) == pytest.approx(50.0, abs=1e-9), "stable for large gaps"
    assert ranking_loss(2.0, 1.0, 1.0) > ranking_loss(2.0, 1.0, 1 / 3) > ranking_loss(2.0, 1.0, 0.0)


def test_margin_tables_are_the_papers():
    assert [margin_for(s, "small") for s in MARGIN_TABLES["small"]] == [1.0, 2 / 3, 1 / 3, 0.0]
    assert [margin_for(s, "large") for s in MARGIN_TABLES["large"]] == [3.0, 2.0, 1.0, 0.0]
    assert margin_for("better", "none") == 0.0
    with pytest.raises(ValueError):
        margin_for("better", "huge")


def test_trls_loss_is_the_margin_formula_on_the_models_scores(tiny_model_dir):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    pairs = [{"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello"}],
              "rejected": [{"role": "assistant", "content": "go away"}], "strength": s}
             for s in ("significantly_better", "slightly_better")]
    rows, _ = tokenize_pairs(pairs, tokenizer, max_length=64, margin_table="large")
    assert [r["margin"] for r in rows] == [3.0, 1.0]
    trainer = RewardTrainer(model=model, processing_class=tokenizer, train_dataset=Dataset.from_list(rows),
                            args=RewardConfig(output_dir="/tmp/unused", report_to=[], use_cpu=True))
    batch = trainer.data_collator(rows)
    model.eval()
    loss = trainer.compute_loss(model, dict(batch)).item()
    with torch.no_grad():
        scores = [model(input_ids=torch.tensor([r[k]])).logits.item() for r in rows
                  for k in ("chosen_ids", "rejected_ids")]
    expected = (ranking_loss(scores[0], scores[1], 3.0) + ranking_loss(scores[2], scores[3], 1.0)) / 2
    assert loss == pytest.approx(expected, rel=1e-4)


def synthetic(n, seed):
    """The preferred response carries a learnable property: it is polite and on topic."""
    rng = random.Random(seed)
    topics = ["tea", "rain", "maps", "bread", "chess", "music", "rivers", "stars"]
    strengths = ["significantly_better", "better", "slightly_better", "negligibly_better"]
    rows = []
    for _ in range(n):
        topic = rng.choice(topics)
        rows.append({
            "prompt": [{"role": "user", "content": f"Tell me about {topic}."}],
            "chosen": [{"role": "assistant", "content": f"Gladly! Here is something lovely about {topic}, thank you."}],
            "rejected": [{"role": "assistant", "content": rng.choice(["No.", "Whatever.", "Ask someone else."])}],
            "strength": rng.choice(strengths), "focus": rng.choice(["helpfulness", "safety"]),
        })
    return rows


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_a_tiny_reward_model_learns_the_property_and_writes_its_evaluation(tiny_model_dir, tmp_path):
    config = RewardJobConfig(
        train=write(tmp_path / "train.jsonl", synthetic(96, 1)), eval=write(tmp_path / "test.jsonl", synthetic(40, 2)),
        base=str(tiny_model_dir), out=str(tmp_path / "rm"), learning_rate=3e-3, epochs=3,
        per_device_batch_size=8, batch_size=8, max_length=128, min_warmup_steps=2, seed=0)
    result = main(config)
    evaluation = result["eval"]
    assert evaluation["accuracy"]["overall"] >= 90, evaluation["accuracy"]
    assert set(evaluation["accuracy_per_strength"]) == {"significantly_better", "better", "slightly_better",
                                                        "negligibly_better"}
    assert "focus=safety" in evaluation["accuracy"]
    assert sum(evaluation["histograms"]["chosen"]["counts"]) == 40
    out = tmp_path / "rm"
    assert (out / "model.safetensors").is_file() and (out / "eval.json").is_file()
    job = json.loads((out / "tandem_job.json").read_text())
    assert job["config"]["margin_table"] == "small" and job["seed"] == 0 and job["metrics"]["steps"] == 36
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in entry for entry in logged)
    # Long pairs are cut from the left, never dropped.
    assert result["summary"]["truncated_pairs"] == 0


def test_the_job_runs_alone_and_prints_json_lines(tiny_model_dir, tmp_path):
    long_context = [{"role": "user", "content": "word " * 400}]
    rows = synthetic(8, 3) + [{**synthetic(1, 4)[0], "prompt": long_context}]
    command = [sys.executable, "-m", "training.jobs.reward", "--train", write(tmp_path / "t.jsonl", rows),
               "--base", str(tiny_model_dir), "--out", str(tmp_path / "rm"), "--max-length", "64",
               "--per-device-batch-size", "4", "--batch-size", "4", "--margin-table", "large"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # Other libraries print too; the job's own lines are JSON objects with an "event".
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"event"')]
    assert events[0]["event"] == "data" and events[0]["train_pairs"] == 9 and events[0]["truncated"] == 1
    assert events[-1]["event"] == "done" and events[-1]["truncated_pairs"] == 1
    assert any(e["event"] == "log" and "loss" in e for e in events)


def test_trainable_layers_moves_only_the_top_blocks_and_the_head(tiny_model_dir, tmp_path):
    """`trainable_layers=1` on the 2-block tiny Llama: block 0 and the embedding keep the base's
    weights exactly, block 1, the final norm's neighbour and the scalar head learn."""
    import torch
    from safetensors.torch import load_file

    config = RewardJobConfig(
        train=write(tmp_path / "train.jsonl", synthetic(32, 1)), base=str(tiny_model_dir), out=str(tmp_path / "rm"),
        learning_rate=3e-3, epochs=1, per_device_batch_size=8, batch_size=8, max_length=128,
        min_warmup_steps=1, trainable_layers=1, seed=0)
    main(config)
    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(tmp_path / "rm" / "model.safetensors")
    frozen = [name for name in after if name.startswith(("model.layers.0.", "model.embed_tokens."))]
    trained = [name for name in after if name.startswith("model.layers.1.") and name.endswith("proj.weight")]
    assert frozen and trained
    assert all(torch.equal(before[name], after[name]) for name in frozen), "the lower block was not trained"
    assert all(not torch.equal(before[name], after[name]) for name in trained), "the top block learned"
    job = json.loads((tmp_path / "rm" / "tandem_job.json").read_text())
    assert job["config"]["trainable_layers"] == 1


def test_trainable_layers_beyond_the_models_depth_is_refused(tiny_model_dir, tmp_path):
    config = RewardJobConfig(train=write(tmp_path / "train.jsonl", synthetic(4, 1)), base=str(tiny_model_dir),
                             out=str(tmp_path / "rm"), trainable_layers=3)
    with pytest.raises(ValueError, match="trainable_layers=3, but the model has 2 blocks"):
        main(config)


def test_the_evaluation_reports_accuracy_where_the_longer_answer_won_and_where_it_lost(tiny_model_dir,
                                                                                        monkeypatch):
    from training.jobs import reward
    from training.jobs.common import tokenizer_of

    pairs = [  # (chosen, rejected): longer chosen twice, shorter chosen once, equal lengths once
        {"prompt": "Q1", "chosen": "a long and thorough answer", "rejected": "short", "strength": "better"},
        {"prompt": "Q2", "chosen": [{"role": "assistant", "content": "another long answer"}],
         "rejected": [{"role": "assistant", "content": "brief"}], "strength": "better"},
        {"prompt": "Q3", "chosen": "terse", "rejected": "a rambling answer that goes on", "strength": "better"},
        {"prompt": "Q4", "chosen": "abcde", "rejected": "vwxyz", "strength": "better"},
    ]
    scripted = {"chosen": [1.0, 1.0, 0.0, 1.0], "rejected": [0.0, 0.0, 1.0, 0.0]}
    calls = iter(("chosen", "rejected"))
    monkeypatch.setattr(reward, "score_token_ids", lambda model, sequences, **kwargs: scripted[next(calls)])

    class Model:
        def eval(self):
            return self

    found = reward.evaluate(Model(), tokenizer_of(str(tiny_model_dir)), pairs, max_length=64, bins=4)
    assert found["accuracy"]["overall"] == 75.0
    assert found["length_bias"] == {"chosen_longer": {"accuracy": 100.0, "pairs": 2},
                                    "chosen_shorter": {"accuracy": 0.0, "pairs": 1}}
