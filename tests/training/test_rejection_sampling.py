"""The rejection-sampling job: samples over HTTP, the combined reward, the best kept per prompt,
pooling with earlier rounds, the gain, and the fine-tune on what was kept."""

import json
import subprocess
import sys
import threading
from collections import defaultdict, deque
from pathlib import Path

import pytest

from bench.processes import ROOT
from training.jobs import rejection_sampling
from training.jobs.common import score_conversations
from training.jobs.rejection_sampling import (
    RejectionSamplingJobConfig,
    gain_report,
    main,
    parse,
    reward_curves,
    sample_and_select,
    sample_reward,
    temperatures_of,
)
from training.jobs.sft import SFTJobConfig


def from_script(script: dict[str, list]):
    """Each prompt (its last user turn) gets its scripted answers, one per request, in any order."""
    queues, lock = {key: deque(texts) for key, texts in script.items()}, threading.Lock()

    def answer(body):
        with lock:
            return queues[body["messages"][-1]["content"]].popleft()

    return answer


# Raw scores of the two reward models for each answer: (helpfulness, safety).
SCORES = {
    # A helpfulness prompt, every answer safe: ranked by the helpfulness RM.
    "tea-1": (0.5, 3.0), "tea-2": (2.0, 3.0), "tea-3": (-1.0, 3.0), "tea-4": (1.0, 3.0),
    # A safety prompt: ranked by the safety RM whatever the helpfulness RM says.
    "lock-1": (3.0, -1.0), "lock-2": (0.0, 2.5), "lock-3": (1.0, 0.5), "lock-4": (-2.0, 1.5),
    # A helpfulness prompt whose most helpful answers are unsafe (σ(r_s) < 0.15): the safety RM decides them.
    "dose-1": (4.0, -3.0), "dose-2": (1.0, 1.0), "dose-3": (0.0, 1.0), "dose-4": (2.0, -2.5),
    # Answers of an earlier round.
    "tea-old": (5.0, 3.0), "lock-old": (2.0, 0.0), "maps-old": (1.5, 2.0),
}
PROMPTS = [
    {"prompt": "Tell me about tea."},
    {"messages": [{"role": "user", "content": "How do I pick a lock?"}], "is_safety": True},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                  {"role": "user", "content": "How much of this medicine can I take?"}], "is_safety": False},
]
SCRIPT = {"Tell me about tea.": ["tea-1", "tea-2", "tea-3", "tea-4"],
          "How do I pick a lock?": ["lock-1", "lock-2", "lock-3", "lock-4"],
          "How much of this medicine can I take?": ["dose-1", "dose-2", "dose-3", "dose-4"]}


def fake_reward_models(path, conversations, *, max_length, batch_size):
    column = {"helpfulness-rm": 0, "safety-rm": 1}[Path(path).name]
    return [SCORES[conversation[-1]["content"]][column] for conversation in conversations]


@pytest.fixture
def reward_models(tmp_path, monkeypatch):
    monkeypatch.setattr(rejection_sampling, "reward_model_scores", fake_reward_models)
    for name in ("helpfulness-rm", "safety-rm"):
        (tmp_path / name).mkdir()
    return {"helpfulness_rm": str(tmp_path / "helpfulness-rm"), "safety_rm": str(tmp_path / "safety-rm")}


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def events_of(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"event"')]


def tiny_sft(**fields):
    return SFTJobConfig(learning_rate=1e-3, epochs=1, per_device_batch_size=4, gradient_accumulation_steps=1,
                        max_length=128, gradient_checkpointing=False, **fields)


def test_the_reward_of_a_sample_is_the_logit_of_the_combined_reward():
    assert sample_reward(helpfulness=2.0, safety=3.0, is_safety=False) == pytest.approx(2.0)
    assert sample_reward(helpfulness=2.0, safety=3.0, is_safety=True) == pytest.approx(3.0)
    assert sample_reward(helpfulness=4.0, safety=-3.0, is_safety=False) == pytest.approx(-3.0)  # σ(−3) < 0.15
    assert sample_reward(helpfulness=4.0, safety=-1.5, is_safety=False) == pytest.approx(4.0)  # σ(−1.5) ≈ .18
    assert sample_reward(helpfulness=None, safety=-1.5, is_safety=False) == pytest.approx(-1.5)
    assert sample_reward(helpfulness=0.5, safety=None, is_safety=True) == pytest.approx(0.5)


def test_gain_is_max_minus_median_per_prompt_and_their_mean():
    gain = gain_report({"a": [1.0, 5.0, 2.0], "b": [0.0, 4.0], "c": []}, k=3)
    # a: max 5, median 2, gain 3; b: max 4, median 2, gain 2; c: nothing drawn, left out.
    assert [(r["prompt_id"], r["max"], r["median"], r["gain"]) for r in gain["per_prompt"]] == [
        ("a", 5.0, 2.0, 3.0), ("b", 4.0, 2.0, 2.0)]
    assert (gain["prompts"], gain["mean_gain"], gain["mean_max"], gain["mean_median"]) == (2, 2.5, 4.5, 2.0)


def test_keeps_the_best_sample_per_prompt_and_fine_tunes_on_it(tiny_model_dir, tmp_path, serve, reward_models,
                                                                capsys):
    server = serve(from_script(SCRIPT))
    config = RejectionSamplingJobConfig(
        prompts=write(tmp_path / "prompts.jsonl", PROMPTS), endpoint=server.base_url, k=4, temperature=1.3,
        top_p=0.95, max_new_tokens=32, concurrency=3, base=str(tiny_model_dir), out=str(tmp_path / "round"),
        sft=tiny_sft(seed=7), **reward_models)
    result = main(config)
    out = tmp_path / "round"

    # K requests per prompt, each with its own seed and the round's sampling settings.
    assert len(server.requests) == 12
    sent = {(r["temperature"], r["top_p"], r["max_completion_tokens"], r["model"]) for r in server.requests}
    assert sent == {(1.3, 0.95, 32, "scripted-model")}
    assert len({r["seed"] for r in server.requests}) == 12
    dose_requests = [r for r in server.requests if r["messages"][-1]["content"].startswith("How much")]
    assert dose_requests[0]["messages"][:2] == PROMPTS[2]["messages"][:2], "the whole dialogue is the prompt"

    kept = {row["messages"][-1]["content"]: row for row in read(out / "kept.jsonl")}
    assert set(kept) == {"tea-2", "lock-2", "dose-2"}
    assert kept["dose-2"]["messages"][:-1] == PROMPTS[2]["messages"]
    assert kept["tea-2"]["reward"] == pytest.approx(2.0) and kept["lock-2"]["reward"] == pytest.approx(2.5)
    assert {(row["round"], row["source"]) for row in kept.values()} == {(1, "sample")}

    samples = read(out / "samples.jsonl")
    assert len(samples) == 12 and all(s["error"] is None for s in samples)
    assert sorted(s["text"] for s in samples if s["kept"]) == ["dose-2", "lock-2", "tea-2"]
    by_text = {s["text"]: s for s in samples}
    assert by_text["dose-1"]["reward"] == pytest.approx(-3.0) and by_text["dose-1"]["helpfulness"] == 4.0

    # By hand: tea max 2, median (0.5 + 1) / 2 = 0.75, gain 1.25; lock (rewards −1, 2.5, 0.5, 1.5) max 2.5,
    # median 1, gain 1.5; dose (−3, 1, 0, −2.5) max 1, median −1.25, gain 2.25; mean (1.25 + 1.5 + 2.25) / 3.
    gain = json.loads((out / "gain.json").read_text())
    assert [round(r["gain"], 9) for r in gain["per_prompt"]] == [1.25, 1.5, 2.25]
    assert [round(r["median"], 9) for r in gain["per_prompt"]] == [0.75, 1.0, -1.25]
    assert gain["mean_gain"] == pytest.approx(5 / 3) and gain["k"] == 4

    # The fine-tune ran on the kept answers and wrote a checkpoint that carries the round's record.
    assert result["train"]["summary"]["train_examples"] == 3 and result["train"]["summary"]["steps"] == 1
    job = json.loads((out / "tandem_job.json").read_text())
    assert job["job"] == "rejection_sampling" and job["seed"] == 7
    assert job["config"]["k"] == 4 and job["config"]["sft"]["train"] == str(out / "kept.jsonl")
    assert job["metrics"]["mean_gain"] == pytest.approx(5 / 3) and job["metrics"]["steps"] == 1
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "generation_config.json").read_text())["do_sample"] is True

    events = events_of(capsys.readouterr().out)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "data" and kinds[-1] == "done" and "samples" in kinds
    sampling = [e for e in events if e["event"] == "log" and e["phase"] == "sampling"]
    assert sampling[-1]["step"] == sampling[-1]["max_steps"] == 12
    assert any(e["event"] == "log" and e["phase"] == "train" and "loss" in e for e in events)
    table = next(e for e in events if e["event"] == "samples")["rows"]
    assert table[0]["best"] == "tea-2" and table[0]["worst"] == "tea-3" and table[0]["median_reward"] == 0.75
    done = events[-1]
    assert done["kept"] == 3 and done["mean_gain"] == pytest.approx(5 / 3) and done["train_examples"] == 3


def test_pooling_keeps_the_better_of_this_round_and_earlier_rounds(tmp_path, serve, reward_models, capsys):
    server = serve(from_script(SCRIPT))
    tea, lock = PROMPTS[0]["prompt"], PROMPTS[1]["messages"]
    earlier = write(tmp_path / "round1-kept.jsonl", [
        # Its stored reward (from round 1's RMs) is stale: the current RMs score it again.
        {"messages": [{"role": "user", "content": tea}, {"role": "assistant", "content": "tea-old"}],
         "reward": -9.0, "round": 1},
        {"messages": lock + [{"role": "assistant", "content": "lock-old"}], "reward": 9.0, "round": 1},
    ])
    older = write(tmp_path / "round0-kept.jsonl", [
        {"messages": [{"role": "user", "content": "Read a map?"},
                      {"role": "assistant", "content": "maps-old"}], "reward": 1.0, "round": 1},
    ])
    config = RejectionSamplingJobConfig(
        prompts=write(tmp_path / "prompts.jsonl", PROMPTS), endpoint=server.base_url, k=4,
        pool=[earlier, older], out=str(tmp_path / "round"), base="unused", sft=tiny_sft(), **reward_models)
    (tmp_path / "round").mkdir()
    summary = sample_and_select(config, tmp_path / "round")

    kept = {row["messages"][-1]["content"]: row for row in read(tmp_path / "round" / "kept.jsonl")}
    # tea: the earlier answer (5.0) beats this round's best (2.0); lock: this round's (2.5) beats the earlier
    # one (0.0 under the current safety RM, whatever round 1 stored); maps: sampled in no later round, kept.
    assert set(kept) == {"tea-old", "lock-2", "dose-2", "maps-old"}
    assert (kept["tea-old"]["round"], kept["tea-old"]["source"]) == (1, "pool")
    assert kept["tea-old"]["reward"] == pytest.approx(5.0)
    assert (kept["lock-2"]["round"], kept["lock-2"]["source"]) == (2, "sample")  # round: one after the pool's
    assert kept["lock-2"]["is_safety"] is True
    assert summary["kept_from_pool"] == 2 and summary["round"] == 2
    # The gain measures this round's samples only.
    assert summary["mean_gain"] == pytest.approx(5 / 3)
    data = events_of(capsys.readouterr().out)[0]
    assert (data["pool_rows"], data["pool_prompts_matched"], data["pool_only_prompts"]) == (3, 2, 1)

    fresh = serve(from_script(SCRIPT))
    strict = RejectionSamplingJobConfig(**{**config.__dict__, "keep_pool_only_prompts": False,
                                           "endpoint": fresh.base_url, "out": str(tmp_path / "strict")})
    (tmp_path / "strict").mkdir()
    sample_and_select(strict, tmp_path / "strict")
    assert {row["messages"][-1]["content"] for row in read(tmp_path / "strict" / "kept.jsonl")} == {
        "tea-old", "lock-2", "dose-2"}


def test_failed_samples_are_retried_then_counted_never_silently_lost(tmp_path, serve, reward_models):
    script = from_script({**SCRIPT, "Tell me about tea.": ["tea-1", "tea-2"]})
    first_try = set()

    def answer(body):
        prompt = body["messages"][-1]["content"]
        if prompt == "How do I pick a lock?":
            return 400, "prompt refused"  # permanent: not retried
        if prompt == "How much of this medicine can I take?" and body["seed"] not in first_try:
            first_try.add(body["seed"])
            return 503, "busy"  # transient: the second try answers
        return script(body)

    server = serve(answer)
    config = RejectionSamplingJobConfig(
        prompts=write(tmp_path / "prompts.jsonl", PROMPTS), endpoint=server.base_url, k=2, max_attempts=2,
        out=str(tmp_path / "round"), base="unused", **reward_models)
    (tmp_path / "round").mkdir()
    summary = sample_and_select(config, tmp_path / "round")
    assert (summary["samples"], summary["failed_samples"], summary["prompts_without_samples"]) == (4, 2, 1)
    samples = read(tmp_path / "round" / "samples.jsonl")
    refused = [s for s in samples if s["error"]]
    assert len(refused) == 2 and all("prompt refused" in s["error"] and s["attempts"] == 1 for s in refused)
    assert {s["attempts"] for s in samples if s["text"] and s["text"].startswith("dose")} == {2}
    assert len(read(tmp_path / "round" / "kept.jsonl")) == 2


def test_no_reward_model_is_refused_before_any_sampling(tmp_path, serve):
    server = serve(lambda body: "never")
    config = RejectionSamplingJobConfig(prompts=write(tmp_path / "p.jsonl", PROMPTS),
                                        endpoint=server.base_url, base="b", out=str(tmp_path / "o"))
    with pytest.raises(ValueError, match="reward-model|helpfulness-rm"):
        main(config)
    assert server.requests == []


def test_parse_nests_the_sft_settings_and_repeats_the_pool():
    config = parse(["--prompts", "p.jsonl", "--endpoint", "http://h/v1", "--base", "b", "--out", "o",
                    "--helpfulness-rm", "h", "--pool", "r1.jsonl", "--pool", "r2.jsonl", "--k", "8",
                    "--temperature", "1.2", "--seed", "3", "--learning-rate", "1e-5", "--max-length", "2048",
                    "--keep-pool-only-prompts", "false"])
    assert config.pool == ["r1.jsonl", "r2.jsonl"] and config.k == 8 and config.temperature == 1.2
    assert config.keep_pool_only_prompts is False
    sft = config.sft
    assert (sft.seed, sft.learning_rate, sft.max_length, sft.epochs) == (3, 1e-5, 2048, 2.0)


def test_the_jobs_import_nothing_of_django():
    code = ("import sys, training.jobs.sft, training.jobs.rejection_sampling, training.jobs.gatt, "
            "training.jobs.sampling, training.jobs.ppo, training.jobs.policy_eval; "
            "assert 'django' not in sys.modules, sorted(m for m in sys.modules if 'django' in m)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_job_runs_alone_against_a_real_model_server_and_real_reward_model(tiny_model_dir, model_server,
                                                                               tmp_path):
    # The real path end to end: `transformers serve` samples, a (tiny, random) reward model scores.
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    reward_model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    reward_model.config.pad_token_id = tokenizer.pad_token_id
    reward_model.save_pretrained(tmp_path / "rm")  # its score head saved, so every load scores alike
    tokenizer.save_pretrained(tmp_path / "rm")
    prompts = write(tmp_path / "prompts.jsonl", [{"prompt": "Name a colour."}, {"prompt": "Name a fruit."}])
    out = tmp_path / "round"
    command = [sys.executable, "-m", "training.jobs.rejection_sampling", "--prompts", prompts,
               "--endpoint", model_server.base_url, "--model", model_server.model_name, "--k", "3",
               "--max-new-tokens", "6", "--concurrency", "2",
               "--helpfulness-rm", str(tmp_path / "rm"), "--base", str(tiny_model_dir), "--out", str(out),
               "--epochs", "1", "--per-device-batch-size", "2", "--gradient-accumulation-steps", "1",
               "--max-length", "128", "--gradient-checkpointing", "false"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    events = events_of(done.stdout)
    assert events[0]["event"] == "data" and events[0]["model"] == model_server.model_name
    assert events[-1]["event"] == "done" and events[-1]["samples"] == 6 and events[-1]["steps"] == 1

    samples, kept = read(out / "samples.jsonl"), read(out / "kept.jsonl")
    groups = defaultdict(list)
    for sample in samples:
        groups[sample["prompt_id"]].append(sample)
    assert len(groups) == 2 and all(len(group) == 3 for group in groups.values())
    for row in kept:
        best = max(groups[row["prompt_id"]], key=lambda s: s["reward"])
        assert row["messages"][-1]["content"] == best["text"] and row["reward"] == best["reward"]

    # The stored rewards are the reward model's own scores (LOGIT(σ(r)) = r).
    conversations = [row["messages"] for row in kept]
    expected = score_conversations(reward_model.eval(), tokenizer, conversations, max_length=4096)
    assert [row["reward"] for row in kept] == pytest.approx(expected, abs=1e-4)


def test_reward_curves_are_max_and_median_of_the_first_n_samples():
    # a: 1, 3, 2 → N1 max 1 med 1; N2 max 3 med 2; N3 max 3 med 2. b: 4, 0 → N1 4/4; N2 4/2. Averaged over prompts.
    curve = reward_curves({"a": [1.0, 3.0, 2.0], "b": [4.0, 0.0], "c": []})
    assert curve == {"n": [1, 2, 3], "max": [2.5, 3.5, 3.0], "median": [2.5, 2.0, 2.0], "prompts": [2, 2, 1]}
    assert temperatures_of(RejectionSamplingJobConfig(temperature=1.0, temperatures="0.7, 1.0,1.3")) == [1.0, 0.7, 1.3]


def test_the_temperatures_setting_is_bounded_by_the_job(db):
    from django.core.exceptions import ValidationError

    from training.job_settings import settings_validate

    assert settings_validate("rejection_sampling", {"temperatures": "0.8, 1.2,2"})["temperatures"] == "0.8, 1.2,2"
    for bad in ("3", "a", "1.0;1.2", ",".join(["1"] * 8), "-1"):
        with pytest.raises(ValidationError) as refused:
            settings_validate("rejection_sampling", {"temperatures": bad})
        assert "temperatures" in refused.value.message_dict, bad


def test_curves_per_temperature_in_the_order_samples_were_drawn(tiny_model_dir, tmp_path, serve, reward_models):
    # Which answer a request gets depends on its seed (the sample's place) and its temperature, not on the order
    # the concurrent requests arrive in: at 1.3 the answers come as tea-1 … tea-4, at 0.7 the other way round.
    seed0 = 7 + 1_000_003  # the SFT seed + round 1
    second = 1  # index of the extra temperature: its seeds follow the first temperature's

    def answer(body):
        place = body["seed"] - seed0
        order = [1, 2, 3, 4] if body["temperature"] == 1.3 else [4, 3, 2, 1]
        assert place // 4 == (0 if body["temperature"] == 1.3 else second)
        return f"tea-{order[place % 4]}"

    server = serve(answer)
    config = RejectionSamplingJobConfig(
        prompts=write(tmp_path / "prompts.jsonl", PROMPTS[:1]), endpoint=server.base_url, k=4, temperature=1.3,
        temperatures="0.7", max_new_tokens=8, concurrency=3, base=str(tiny_model_dir), out=str(tmp_path / "round"),
        sft=tiny_sft(seed=7), **reward_models)
    (tmp_path / "round").mkdir()
    summary = sample_and_select(config, tmp_path / "round")
    assert len(server.requests) == 8 and {r["temperature"] for r in server.requests} == {1.3, 0.7}
    # Rewards in draw order: T 1.3 → 0.5, 2, −1, 1; T 0.7 → 1, −1, 2, 0.5.
    curves = json.loads((tmp_path / "round" / "gain.json").read_text())["curves"]
    assert curves["1.3"]["max"] == [0.5, 2.0, 2.0, 2.0] and curves["1.3"]["median"] == [0.5, 1.25, 0.5, 0.75]
    assert curves["0.7"]["max"] == [1.0, 1.0, 2.0, 2.0] and curves["0.7"]["median"] == [1.0, 0.0, 1.0, 0.75]
    assert summary["curves"] == curves and summary["temperatures"] == [1.3, 0.7]
    kept = read(tmp_path / "round" / "kept.jsonl")
    assert [row["messages"][-1]["content"] for row in kept] == ["tea-2"]  # the best of all eight
