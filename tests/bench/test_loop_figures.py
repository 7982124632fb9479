"""The loop benchmark's figures from an evaluation run's samples (bench/loop_figures.py): what counts
as a fresh pair, and the command that judges stored samples again."""

import json

import pytest

from annotation.workspace.simulation import PreferenceModel
from bench.loop_figures import judged, main
from bench.loop_profiles import concise_preference

CONCISE = PreferenceModel(preference=concise_preference, noise=0.0)


def _rows():
    """Three prompts. 'cool' and 'warm' serve one model at one temperature and seed, so they answer
    alike; 'rs' answers shorter, and the RM scores shorter answers higher except on prompt 2."""
    rows = []
    for number in range(3):
        prompt = [{"role": "user", "content": f"Question {number}?"}]
        long_answer = "word " * (12 + number)
        rows += [{"prompt": prompt, "variant": "cool", "answer": long_answer, "helpfulness_score": 0.1},
                 {"prompt": prompt, "variant": "warm", "answer": long_answer, "helpfulness_score": 0.1},
                 {"prompt": prompt, "variant": "rs", "answer": "word " * 2,
                  "helpfulness_score": -0.5 if number == 2 else 0.9}]
    return rows


def test_identical_answers_are_not_pairs_and_the_new_policys_answers_are():
    found = judged(_rows(), model=CONCISE, variants=["cool", "rs", "warm"], new={"rejection_sampling": "rs"},
                   start="cool", seed=0)
    fresh = found["fresh_pairs"]
    # cool = warm on every prompt: three identical pairs left out; rs against each: six pairs.
    assert fresh["identical_left_out"] == 3 and fresh["pairs"] == 6
    assert fresh["agreement_with_preference"] == pytest.approx(4 / 6, abs=1e-4)
    assert sum(entry["pairs"] for entry in fresh["accuracy_per_strength"].values()) == 6
    assert found["verdict"]["rejection_sampling"]["win_rate_noiseless"] == 1.0


def test_the_verdict_does_not_move_with_the_fresh_pairs():
    """Each figure draws from its own stream: judging more pairs for the RM leaves the verdict's
    side draws, and so its noisy win rate, as they were."""
    noisy = PreferenceModel(preference=concise_preference, noise=2.0)
    few = judged(_rows(), model=noisy, variants=["cool"], new={"rs": "rs"}, start="cool", seed=7)
    many = judged(_rows(), model=noisy, variants=["cool", "rs", "warm"], new={"rs": "rs"}, start="cool", seed=7)
    assert few["verdict"] == many["verdict"]


def test_the_command_judges_stored_samples_again(tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(row) + "\n" for row in _rows()))
    main([str(samples), "--start", "cool", "--new", "rejection_sampling=rs", "--profile", "cpu", "--noise", "0"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["fresh_pairs"]["pairs"] == 6
    assert printed["verdict"]["rejection_sampling"]["prompts"] == 3
    with pytest.raises(SystemExit, match="Not in these samples: ppo-1"):
        main([str(samples), "--start", "cool", "--new", "ppo=ppo-1"])


def test_the_policy_rounds_are_chosen_on_the_command_line():
    from bench.loop_efficacy import parse_args
    from bench.loop_steps import STEPS

    base = ["--profile", "tiny"]
    assert parse_args(base).policies == ("rs",)
    assert parse_args([*base, "--policy", "rs,dpo,rloo"]).policies == ("rs", "dpo", "rloo")
    assert parse_args([*base, "--policy", "dpo", "--ppo"]).policies == ("dpo", "ppo")
    for bad in ("kto", "rs,kto", ""):
        with pytest.raises(SystemExit):
            parse_args([*base, "--policy", bad])
    # Every round has its step, after the reward model and before the new variants are served.
    assert STEPS.index("reward_model_trained") < min(STEPS.index(s) for s in ("dpo", "rloo")) < STEPS.index("served")


def test_the_reward_model_is_read_beside_a_length_only_rule_on_the_same_pairs():
    import random

    from bench.loop_figures import rm_agreement, table

    found = rm_agreement(_rows(), model=CONCISE, variants=["cool", "rs", "warm"], rng=random.Random(0))
    # Six labelled pairs (rs against cool and against warm, three prompts); the RM is wrong on prompt 2.
    assert found["accuracy"] == round(4 / 6, 4)
    length = found["length_baseline"]
    assert length["pairs"] == 6 and length["shorter_wins"] == 1.0 and length["longer_wins"] == 0.0
    assert length["best_rule"] == "shorter_wins" and length["accuracy"] == 1.0
    assert sum(row["pairs"] for row in length["accuracy_per_strength"].values()) == 6
    figures = {"profile": {"name": "t", "judgements": 1, "k": 1, "max_new_tokens": 1, "preference": "p", "noise": 0},
               "prompts": {"train": 1, "held_out": 3}, "round0": {"stored": 1, "agreement_with_preference": 1.0},
               "batch": {"label": "b"}, "reward_model": {"held_out": {}, "fresh_pairs": found}, "verdict": {},
               "leaderboard": {}, "seconds": {"total": 1.0}}
    assert any("length-only rule" in line and "shorter wins: 100.0 %" in line for line in table(figures))
