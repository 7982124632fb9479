"""The reward model's data: the Llama 2 mixes, the held-out evaluation set, and launch validation."""

import json

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from annotation.batches.imports import preferences_import
from annotation.models import Batch, PreferenceSource
from core.preference_scale import MARGIN_TABLES
from training.data import reward_data_write
from training.launch import run_launch
from training.models import TrainingRun

pytestmark = pytest.mark.django_db


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def imported(tmp_path, admin, name, focus, n):
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps({
        "prompt": [{"role": "user", "content": f"{name} question {i}"}],
        "chosen": [{"role": "assistant", "content": f"good {i}"}],
        "rejected": [{"role": "assistant", "content": f"bad {i}"}]}) + "\n" for i in range(n)))
    preferences_import(path=path, kind="trl", source_name=name, admin=admin, focus=focus)
    return PreferenceSource.objects.get(name=name)


def test_helpfulness_mix_is_all_helpfulness_plus_an_equal_share_of_the_rest(preference_batch, tmp_path,
                                                                             django_user_model):
    batch = preference_batch(helpfulness=40, safety=24)
    admin = django_user_model.objects.get(username="adm")
    source = imported(tmp_path, admin, "hh-harmless", "safety", 30)
    mix = {"primary_share": 0.5, "other_focus": "secondary", "sources": {"hh-harmless": "secondary"}}
    counts = reward_data_write(focus="helpfulness", batches=[batch], sources=[source], mix=mix,
                               seed=3, out_dir=tmp_path / "d")
    train = lines(tmp_path / "d" / "train.jsonl")
    helpful = [r for r in train if r["focus"] == "helpfulness" and r["source"] == str(batch)]
    assert counts["primary_pairs"] == len(helpful) == counts["parts"][f"{batch}:helpfulness"]["available"]
    # An equal share of safety and imported data, drawn uniformly from both.
    assert counts["secondary_used"] == len(train) - len(helpful) == len(helpful)
    assert counts["secondary_available"] == counts["parts"][f"{batch}:safety"]["available"] + 30
    assert {r["source"] for r in train} == {str(batch), "hh-harmless"}
    assert all(r["split"] == "train" for r in train if r["source"] == str(batch))
    # Strengths, not margins: the reward job applies its margin table (the one place a margin is
    # computed); an imported pair without a strength keeps its own margin (0 when it has none).
    assert {r["strength"] for r in helpful} == set(MARGIN_TABLES["small"]) and {r["margin"] for r in helpful} == {None}
    assert {r["margin"] for r in train if r["source"] == "hh-harmless"} == {0.0}
    # Evaluation: the held-out split of the batch, both focuses (Table 8 reports each RM on both).
    held_out = lines(tmp_path / "d" / "eval.jsonl")
    assert {r["split"] for r in held_out} == {"test"} and {r["focus"] for r in held_out} == {"helpfulness", "safety"}
    assert counts["eval_pairs"] == len(held_out) == 16  # 25 % of 64
    assert not {r["turn_id"] for r in held_out} & {r.get("turn_id") for r in train}
    # Same inputs, same seed: the same files.
    again = reward_data_write(focus="helpfulness", batches=[batch], sources=[source], mix=mix, seed=3,
                              out_dir=tmp_path / "e")
    assert again == counts
    assert (tmp_path / "e" / "train.jsonl").read_bytes() == (tmp_path / "d" / "train.jsonl").read_bytes()


def test_safety_mix_is_ninety_ten_with_harmless_data_primary(preference_batch, tmp_path, django_user_model):
    batch = preference_batch(helpfulness=40, safety=24)
    admin = django_user_model.objects.get(username="adm")
    harmless = imported(tmp_path, admin, "hh-harmless", "safety", 30)
    helpful = imported(tmp_path, admin, "shp", "helpfulness", 30)
    run_defaults = {"primary_share": 0.9, "other_focus": "secondary",
                    "sources": {"hh-harmless": "primary", "shp": "secondary"}}
    counts = reward_data_write(focus="safety", batches=[batch], sources=[harmless, helpful], mix=run_defaults,
                               seed=0, out_dir=tmp_path / "d")
    safety_train = batch.turns.filter(split="train", dialogue__focus="safety").count()
    assert counts["primary_pairs"] == safety_train + 30  # the safety training split and all of HH harmless
    assert counts["secondary_used"] == round(counts["primary_pairs"] * 0.1 / 0.9)
    train = lines(tmp_path / "d" / "train.jsonl")
    assert sum(r["focus"] == "safety" for r in train) == counts["primary_pairs"]
    assert len(train) == counts["primary_pairs"] + counts["secondary_used"]
    assert {r["strength"] for r in train if r["source"] == str(batch) and r["focus"] == "safety"} <= set(
        MARGIN_TABLES["large"])



def test_every_margin_table_the_launch_offers_is_applied_by_the_job(preference_batch, tmp_path, tiny_model_dir):
    # The form once offered "none", which the export never had (a KeyError on margin_none); the job
    # owns the table now, and reads every one it offers.
    from transformers import AutoTokenizer

    from training.jobs.reward import RewardJobConfig, tokenize_pairs

    batch = preference_batch(helpfulness=20)
    reward_data_write(focus="helpfulness", batches=[batch], sources=[], mix={
        "primary_share": 0.5, "other_focus": "secondary", "sources": {}}, seed=1, out_dir=tmp_path / "d")
    pairs = lines(tmp_path / "d" / "train.jsonl")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for table in dict(RewardJobConfig.__dataclass_fields__["margin_table"].metadata)["setting"].choices:
        rows, _ = tokenize_pairs(pairs, tokenizer, max_length=64, margin_table=table)
        margins = {r["margin"] for r in rows}
        assert margins == ({0.0} if table == "none" else set(MARGIN_TABLES[table].values())), table


def test_launch_validates_every_field_and_stores_nothing_when_refused(preference_batch, researcher, tiny_base):
    batch = preference_batch(helpfulness=12)
    cases = [
        ({"batches": []}, "batches", "at least one"),
        ({"batches": ["2031-W01"]}, "batches", "No batch 2031-W01"),
        ({"sources": ["nope"]}, "sources", "nope"),
        ({"focus": "vibes"}, "focus", "helpfulness or safety"),
        ({"settings": {"margin_table": "huge"}}, "margin_table", "none, small, large"),
        ({"settings": {"learning_rate": 5}}, "learning_rate", "between"),
        ({"settings": {"learning_rate": "fast"}}, "learning_rate", "Not a number"),
        ({"settings": {"epochs": 0}}, "epochs", "between"),
        ({"settings": {"max_length": 4}}, "max_length", "between"),
        ({"mix": {"primary_share": 0}}, "primary_share", "between"),
        ({"mix": {"other_focus": "maybe"}}, "other_focus", "primary"),
        ({"focus": "safety"}, "batches", "no safety pairs"),  # a helpfulness-only batch
    ]
    for change, field, message in cases:
        arguments = {"researcher": researcher, "kind": "reward_model", "focus": "helpfulness",
                     "batches": [str(batch)], "base": tiny_base, **change}
        with pytest.raises(ValidationError) as refused:
            run_launch(**arguments)
        assert field in refused.value.message_dict, (change, refused.value.message_dict)
        assert message in refused.value.message_dict[field][0], (change, refused.value.message_dict)
    assert not TrainingRun.objects.exists()


def test_an_open_batch_cannot_be_trained_on(researcher, tiny_base):
    batch = Batch.objects.create(iso_year=2026, iso_week=48, starts_on="2026-11-23")
    with pytest.raises(ValidationError, match="still open"):
        run_launch(researcher=researcher, kind="reward_model", focus="helpfulness",
                   batches=[str(batch)], base=tiny_base)


def test_only_researchers_launch(preference_batch, tiny_base, django_user_model):
    batch = preference_batch(helpfulness=8)
    annotator = django_user_model.objects.get(username="ann")
    with pytest.raises(PermissionDenied):
        run_launch(researcher=annotator, kind="reward_model", focus="helpfulness", batches=[str(batch)], base=tiny_base)
    assert not TrainingRun.objects.exists()
