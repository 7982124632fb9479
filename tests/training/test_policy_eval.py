"""Model-based evaluation of variants (Llama 2 Figure 11): reward-model win rates between variants."""

import json
import subprocess
import sys

import pytest

from bench.processes import ROOT
from training.jobs.policy_eval import win_rates

from .test_openrlhf import reward_model


def test_win_rates_by_hand():
    table = win_rates({"a": [1.0, 2.0, 3.0, 0.0], "b": [0.5, 2.0, 4.0, None]})
    # Prompt 4 is left out (b failed); a wins prompt 1, ties prompt 2, loses prompt 3: (1 + 0.5) / 3.
    assert table["a"]["b"] == pytest.approx(0.5) and table["b"]["a"] == pytest.approx(0.5)
    table = win_rates({"a": [2.0, 2.0], "b": [1.0, 1.0], "c": [3.0, 0.0]})
    assert table["a"]["b"] == 1.0 and table["b"]["a"] == 0.0 and table["c"]["a"] == 0.5


def test_the_job_samples_each_variant_and_scores_with_both_reward_models(model_servers, tiny_model_dir, tmp_path):
    helpful = reward_model(tiny_model_dir, tmp_path / "rm-h", seed=1)
    safe = reward_model(tiny_model_dir, tmp_path / "rm-s", seed=2)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Question {i}?"}]}) + "\n"
                               for i in range(4)))
    variants = [{"name": f"v{i}", "base_url": server.base_url, "model": server.model_name}
                for i, server in enumerate(model_servers)]
    done = subprocess.run([sys.executable, "-m", "training.jobs.policy_eval", "--prompts", str(prompts),
                           "--variants", json.dumps(variants), "--helpfulness-rm", str(helpful), "--safety-rm",
                           str(safe), "--out", str(tmp_path / "out"), "--max-new-tokens", "8"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    evaluation = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert evaluation["failed"] == {"v0": 0, "v1": 0}
    for rm in ("helpfulness", "safety"):
        table = evaluation["win_rate"][rm]
        assert table["v0"]["v1"] + table["v1"]["v0"] == pytest.approx(1.0)
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 8 and all(s["helpfulness_score"] is not None for s in samples)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"event"')]
    assert events[0]["event"] == "data" and events[-1]["event"] == "done"
