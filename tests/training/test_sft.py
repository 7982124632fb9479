"""The SFT job on CPU with a tiny Llama: the loss mask, the length fitting, and what it writes."""

import json
import shutil
import subprocess
import sys

import pytest

from bench.processes import ROOT
from training.jobs.sft import SFTJobConfig, build_trainer, fit_to_length, main, parse, prompt_completion


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


DEMONSTRATIONS = [
    {"messages": [user("Name a warm drink."), assistant("Tea, brewed for three minutes.")]},
    # An earlier assistant turn is prompt: it is masked like the user turns.
    {"messages": [user("Hi!"), assistant("Hello, how can I help?"), user("A word for rain?"),
                  assistant("Drizzle.")]},
    {"prompt": "Say yes.", "completion": "Yes."},
]


def test_the_defaults_are_the_papers():
    config = SFTJobConfig()
    assert (config.learning_rate, config.lr_scheduler, config.weight_decay) == (2e-5, "cosine", 0.1)
    assert (config.epochs, config.max_length) == (2.0, 4096)
    assert config.per_device_batch_size * config.gradient_accumulation_steps == 64


def test_prompt_completion_splits_off_the_last_answer():
    row = prompt_completion(DEMONSTRATIONS[1])
    assert row["prompt"] == DEMONSTRATIONS[1]["messages"][:3]
    assert row["completion"] == [assistant("Drizzle.")]
    assert prompt_completion(DEMONSTRATIONS[2]) == {"prompt": [user("Say yes.")],
                                                    "completion": [assistant("Yes.")]}
    with pytest.raises(ValueError):  # a conversation that does not end with an answer has nothing to learn
        prompt_completion({"messages": [user("Hi"), assistant("Hello"), user("Bye")]})
    with pytest.raises(ValueError):
        prompt_completion({"messages": [assistant("Out of nowhere.")]})


def test_fit_to_length_cuts_the_prompt_from_the_left_and_never_drops():
    ids, labels = list(range(1, 11)), [-100] * 6 + [7, 8, 9, 10]
    assert fit_to_length(ids, labels, 10) == (ids, labels, "")
    assert fit_to_length(ids, labels, 6) == ([5, 6, 7, 8, 9, 10], [-100, -100, 7, 8, 9, 10], "prompt")
    # The answer alone is longer than the window: a quarter of the window keeps the prompt's end, the rest
    # the answer's start.
    ids, labels = list(range(1, 13)), [-100, -100] + list(range(3, 13))
    assert fit_to_length(ids, labels, 8) == ([1, 2, 3, 4, 5, 6, 7, 8], [-100, -100, 3, 4, 5, 6, 7, 8],
                                             "answer")


def test_labels_mask_every_prompt_token_in_the_collated_batch(tiny_model_dir, tmp_path):
    # What the recipe asks: loss on answer tokens only. A label other than −100 on a prompt token would
    # train the model to write the user's turns (and, in GAtt, the earlier answers).
    long_prompt = {"messages": [user("many words " * 60), assistant("Short answer.")]}
    rows = DEMONSTRATIONS + [long_prompt]
    max_length = 96
    config = SFTJobConfig(train=write(tmp_path / "demos.jsonl", rows), base=str(tiny_model_dir),
                          out=str(tmp_path / "out"), per_device_batch_size=len(rows),
                          gradient_accumulation_steps=1, max_length=max_length, gradient_checkpointing=False)
    trainer, report = build_trainer(config)
    assert (trainer.args.learning_rate, trainer.args.weight_decay, str(trainer.args.lr_scheduler_type)) == (
        2e-5, 0.1, "SchedulerType.COSINE")
    assert report["train_examples"] == 4 and report["truncated"] == 1 and report["answer_truncated"] == 0

    tokenizer = trainer.processing_class
    expected = []
    for row in rows:
        pair = prompt_completion(row)
        prompt_ids = tokenizer.apply_chat_template(pair["prompt"], tokenize=True, add_generation_prompt=True,
                                                   return_dict=False)
        full = tokenizer.apply_chat_template(pair["prompt"] + pair["completion"], tokenize=True,
                                             return_dict=False)
        assert full[:len(prompt_ids)] == prompt_ids
        labels = [-100] * len(prompt_ids) + full[len(prompt_ids):]
        expected.append((full[-max_length:], labels[-max_length:]))
    assert len(expected[3][0]) == max_length and expected[3][1][0] == -100  # cut from the left, prompt first

    batch = next(iter(trainer.get_train_dataloader()))
    seen = []
    for ids, labels, mask in zip(batch["input_ids"].tolist(), batch["labels"].tolist(),
                                 batch["attention_mask"].tolist()):
        length = sum(mask)
        assert all(label == -100 for label in labels[length:]), "padding carries no loss"
        match = [e for e in expected if e[0] == ids[:length]]
        assert len(match) == 1, "each collated row is one demonstration, whole"
        assert labels[:length] == match[0][1]
        seen.append(expected.index(match[0]))
    assert sorted(seen) == [0, 1, 2, 3]


def test_a_short_run_writes_a_checkpoint_that_loads_and_samples(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    # A base whose generation config is greedy: the job must switch sampling on.
    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    generation = json.loads((base / "generation_config.json").read_text())
    (base / "generation_config.json").write_text(json.dumps({**generation, "do_sample": False}))

    rows = [{"messages": [user(f"Tell me about {t}."), assistant(f"{t} is lovely, thank you for asking.")]}
            for t in ("tea", "rain", "maps", "bread", "chess", "music", "rivers", "stars")]
    config = SFTJobConfig(train=write(tmp_path / "t.jsonl", rows), eval=write(tmp_path / "e.jsonl", rows[:2]),
                          base=str(base), out=str(tmp_path / "sft"), learning_rate=3e-3, epochs=2,
                          per_device_batch_size=4, gradient_accumulation_steps=1, max_length=128,
                          gradient_checkpointing=False, seed=1)
    result = main(config)
    out = tmp_path / "sft"
    assert result["summary"]["steps"] == 4 and result["summary"]["eval_loss"] is not None
    assert json.loads((out / "generation_config.json").read_text())["do_sample"] is True
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.generation_config.do_sample is True
    before, after = load_file(base / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(not torch.equal(before[name], after[name]) for name in before), "the weights moved"

    job = json.loads((out / "tandem_job.json").read_text())
    assert job["job"] == "sft" and job["seed"] == 1 and job["step"] == 4
    assert job["config"]["learning_rate"] == 3e-3 and job["metrics"]["train_examples"] == 8
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [entry["learning_rate"] for entry in logged if "loss" in entry]
    assert len(rates) == 4 and rates[0] == pytest.approx(3e-3)
    # Cosine decay: down to half the initial rate half-way through (the third of four steps).
    assert rates == sorted(rates, reverse=True) and rates[2] == pytest.approx(1.5e-3)
    assert any("eval_loss" in entry for entry in logged)
    assert not (out / "trainer").exists()


def test_the_job_runs_alone_and_reports_what_it_cut(tiny_model_dir, tmp_path):
    rows = DEMONSTRATIONS + [{"messages": [user("word " * 200), assistant("ok")]}]
    command = [sys.executable, "-m", "training.jobs.sft", "--train", write(tmp_path / "t.jsonl", rows),
               "--base", str(tiny_model_dir), "--out", str(tmp_path / "sft"), "--max-length", "64",
               "--per-device-batch-size", "2", "--gradient-accumulation-steps", "1", "--epochs", "1",
               "--gradient-checkpointing", "false"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"event"')]
    assert events[0]["event"] == "data" and events[0]["train_examples"] == 4 and events[0]["truncated"] == 1
    assert events[-1]["event"] == "done" and events[-1]["steps"] == 2 and events[-1]["truncated"] == 1
    assert any(e["event"] == "log" and "loss" in e for e in events)


def test_parse_takes_every_setting_as_flag_and_value():
    config = parse(["--train", "t", "--base", "b", "--out", "o", "--gradient-checkpointing", "false",
                    "--learning-rate", "1e-5", "--bf16", "no"])
    assert config.gradient_checkpointing is False and config.learning_rate == 1e-5 and config.bf16 == "no"
    assert config.epochs == 2.0


def test_trainable_layers_fine_tunes_only_the_top_block_with_checkpointing_on(tiny_model_dir, tmp_path):
    """The tied embedding (SmolLM2's output layer) and block 0 stay the base's; block 1 learns, and
    gradient checkpointing (the default) still reaches it through the frozen block below."""
    import torch
    from safetensors.torch import load_file

    rows = [{"messages": [user(f"Tell me about {t}."), assistant(f"{t} is lovely, thank you for asking.")]}
            for t in ("tea", "rain", "maps", "bread")]
    config = SFTJobConfig(train=write(tmp_path / "t.jsonl", rows), base=str(tiny_model_dir), out=str(tmp_path / "sft"),
                          learning_rate=3e-3, epochs=1, per_device_batch_size=4, gradient_accumulation_steps=1,
                          max_length=128, gradient_checkpointing=True, trainable_layers=1, seed=1)
    result = main(config)
    assert result["summary"]["steps"] == 1
    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(tmp_path / "sft" / "model.safetensors")
    frozen = [name for name in before if name.startswith(("model.layers.0.", "model.embed_tokens.", "lm_head."))]
    trained = [name for name in before if name.startswith("model.layers.1.") and name.endswith("proj.weight")]
    assert frozen and trained
    assert all(torch.equal(before[name], after[name]) for name in frozen if name in after)
    assert all(not torch.equal(before[name], after[name]) for name in trained)
