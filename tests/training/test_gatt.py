"""Ghost Attention: the dialogues the model samples and the examples it is trained on, as the
recipe says, and the job end to end against a scripted endpoint."""

import json
import re

import pytest

from training.jobs.gatt import GAttJobConfig, main, parse, sampling_dialogue, training_example
from training.jobs.sft import SFTJobConfig, build_trainer

from .conftest import AnsweringServer
from .test_rejection_sampling import events_of, read, write

INSTRUCTION = "Always answer with a haiku."
TURNS = ["What is rain?", "And snow?", "Which do you prefer?"]
ANSWERS = ["Drops fall from grey skies", "White hush on the hills", "Rain, for its soft drum"]


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def test_sampling_appends_the_instruction_to_every_user_turn():
    dialogue = sampling_dialogue(INSTRUCTION, TURNS, ANSWERS)
    assert dialogue == [
        user("What is rain?\n\nAlways answer with a haiku."), assistant("Drops fall from grey skies"),
        user("And snow?\n\nAlways answer with a haiku."), assistant("White hush on the hills"),
        user("Which do you prefer?\n\nAlways answer with a haiku."), assistant("Rain, for its soft drum"),
    ]
    # Turn by turn: the context of the next answer ends with the next user turn, instruction included.
    assert sampling_dialogue(INSTRUCTION, TURNS) == dialogue[:1]
    assert sampling_dialogue(INSTRUCTION, TURNS, ANSWERS[:2]) == dialogue[:5]
    with pytest.raises(ValueError):
        sampling_dialogue(INSTRUCTION, TURNS[:1], ANSWERS)


def test_training_keeps_the_instruction_in_the_first_turn_only_and_learns_the_last_answer():
    example = training_example(INSTRUCTION, TURNS, ANSWERS)
    assert example == {
        "prompt": [user("What is rain?\n\nAlways answer with a haiku."),
                   assistant("Drops fall from grey skies"),
                   user("And snow?"), assistant("White hush on the hills"),
                   user("Which do you prefer?")],
        "completion": [assistant("Rain, for its soft drum")],
    }
    with pytest.raises(ValueError):
        training_example(INSTRUCTION, TURNS, ANSWERS[:2])


def test_the_loss_is_zero_on_every_earlier_turn_assistant_turns_included(tiny_model_dir, tmp_path):
    example = training_example(INSTRUCTION, TURNS, ANSWERS)
    config = SFTJobConfig(train=write(tmp_path / "gatt.jsonl", [example]), base=str(tiny_model_dir),
                          out=str(tmp_path / "out"), per_device_batch_size=1, gradient_accumulation_steps=1,
                          max_length=512, gradient_checkpointing=False)
    trainer, _ = build_trainer(config)
    batch = next(iter(trainer.get_train_dataloader()))
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    tokenizer = trainer.processing_class
    learned = tokenizer.decode([token for token, label in zip(ids, labels) if label != -100])
    assert learned.startswith("Rain, for its soft drum")
    assert "Drops" not in learned and "White hush" not in learned and "haiku" not in learned


def test_the_job_samples_turn_by_turn_and_fine_tunes(tiny_model_dir, tmp_path, capsys):
    def answer(body):
        # Who is answering which turn, and whether the instruction reached it.
        turn = sum(1 for m in body["messages"] if m["role"] == "user")
        last = body["messages"][-1]["content"]
        return f"answer {turn} to {last.split(chr(10))[0]!r}"

    server = AnsweringServer(answer).start()
    try:
        instructions = tmp_path / "instructions.txt"
        instructions.write_text("# one per line\nSpeak like a pirate.\n\nAnswer in French.\n")
        dialogues = write(tmp_path / "dialogues.jsonl", [
            {"user_turns": ["Hello there.", "What is the sea?"]},
            {"user_turns": ["Name a fish.", "Why?", "Thanks."]},
            {"user_turns": ["Tell me a joke."], "instruction": INSTRUCTION},
        ])
        config = GAttJobConfig(instructions=str(instructions), dialogues=dialogues, endpoint=server.base_url,
                               temperature=0.8, max_new_tokens=16, concurrency=2, base=str(tiny_model_dir),
                               out=str(tmp_path / "gatt"),
                               sft=SFTJobConfig(learning_rate=1e-3, epochs=1, per_device_batch_size=4,
                                                gradient_accumulation_steps=1, max_length=256,
                                                gradient_checkpointing=False))
        result = main(config)
    finally:
        server.stop()
    out = tmp_path / "gatt"

    # Every request carries the instruction in every user turn, and the answers sampled before it.
    assert len(server.requests) == 6
    for request in server.requests:
        users = [m["content"] for m in request["messages"] if m["role"] == "user"]
        instruction = users[0].split("\n\n", 1)[1]
        assert instruction in ("Speak like a pirate.", "Answer in French.", INSTRUCTION)
        assert all(turn.endswith("\n\n" + instruction) for turn in users)
        answers = [m["content"] for m in request["messages"] if m["role"] == "assistant"]
        expected = [f"answer {n} to {u.split(chr(10))[0]!r}" for n, u in enumerate(users[:-1], start=1)]
        assert answers == expected
        assert (request["temperature"], request["max_completion_tokens"]) == (0.8, 16)

    rows = read(out / "gatt_train.jsonl")
    assert [row["dialogue"] for row in rows] == [0, 1, 2]
    assert rows[2]["instruction"] == INSTRUCTION
    for row, turns in zip(rows, (["Hello there.", "What is the sea?"], ["Name a fish.", "Why?", "Thanks."],
                                 ["Tell me a joke."])):
        answers = [f"answer {n} to {turn!r}" for n, turn in enumerate(turns, start=1)]
        assert {"prompt": row["prompt"], "completion": row["completion"]} == training_example(
            row["instruction"], turns, answers)
        assert row["sampled"] == sampling_dialogue(row["instruction"], turns, answers)
    assert sum(bool(re.search(r"pirate|French|haiku", m["content"])) for m in rows[1]["prompt"]) == 1

    assert result["train"]["summary"]["train_examples"] == 3 and (out / "model.safetensors").is_file()
    job = json.loads((out / "tandem_job.json").read_text())
    assert job["job"] == "gatt" and job["metrics"]["examples"] == 3 and job["metrics"]["steps"] == 1
    events = events_of(capsys.readouterr().out)
    assert [events[0]["event"], events[-1]["event"]] == ["data", "done"]
    assert any(e["event"] == "samples" for e in events)
    assert any(e["event"] == "log" and e["phase"] == "sampling" and e["step"] == 3 for e in events)
    assert any(e["event"] == "log" and e["phase"] == "train" and "loss" in e for e in events)


def test_parse_nests_the_sft_settings():
    config = parse(["--instructions", "i.txt", "--dialogues", "d.jsonl", "--endpoint", "http://h/v1",
                    "--base", "b", "--out", "o", "--seed", "5", "--temperature", "0.9"])
    assert config.temperature == 0.9 and config.sft.seed == 5 and config.sft.learning_rate == 2e-5
