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
                               margin_table="small", seed=3, out_dir=tmp_path / "d")
    train = lines(tmp_path / "d" / "train.jsonl")
    helpful = [r for r in train if r["focus"] == "helpfulness" and r["source"] == str(batch)]
    assert counts["primary_pairs"] == len(helpful) == counts["parts"][f"{batch}:helpfulness"]["available"]
    # An equal share of safety and imported data, drawn uniformly from both.
    assert counts["secondary_used"] == len(train) - len(helpful) == len(helpful)
    assert counts["secondary_available"] == counts["parts"][f"{batch}:safety"]["available"] + 30
    assert {r["source"] for r in train} == {str(batch), "hh-harmless"}
    assert all(r["split"] == "train" for r in train if r["source"] == str(batch))
    # Margins from the small table; imported pairs without a strength get 0.
    assert {r["margin"] for r in helpful} == {1.0, 2 / 3, 1 / 3, 0.0}
    # Evaluation: the held-out split of the batch, both focuses (Table 8 reports each RM on both).
    held_out = lines(tmp_path / "d" / "eval.jsonl")
    assert {r["split"] for r in held_out} == {"test"} and {r["focus"] for r in held_out} == {"helpfulness", "safety"}
    assert counts["eval_pairs"] == len(held_out) == 16  # 25 % of 64
    assert not {r["turn_id"] for r in held_out} & {r.get("turn_id") for r in train}
    # Same inputs, same seed: the same files.
    again = reward_data_write(focus="helpfulness", batches=[batch], sources=[source], mix=mix, margin_table="small",
                              seed=3, out_dir=tmp_path / "e")
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
                               margin_table="large", seed=0, out_dir=tmp_path / "d")
    safety_train = batch.turns.filter(split="train", dialogue__focus="safety").count()
    assert counts["primary_pairs"] == safety_train + 30  # the safety training split and all of HH harmless
    assert counts["secondary_used"] == round(counts["primary_pairs"] * 0.1 / 0.9)
    train = lines(tmp_path / "d" / "train.jsonl")
    assert sum(r["focus"] == "safety" for r in train) == counts["primary_pairs"]
    assert len(train) == counts["primary_pairs"] + counts["secondary_used"]
    assert {r["margin"] for r in train if r["source"] == str(batch) and r["focus"] == "safety"} <= {3.0, 2.0, 1.0, 0.0}



def test_every_margin_table_the_launch_form_offers_writes_a_tandem_batch(preference_batch, tmp_path):
    # The form offered "none", which the export never had: a KeyError on margin_none.
    batch = preference_batch(helpfulness=20)
    for table in ("none", "small", "large"):
        reward_data_write(focus="helpfulness", batches=[batch], sources=[], mix={
            "primary_share": 0.5, "other_focus": "secondary", "sources": {}},
            margin_table=table, seed=1, out_dir=tmp_path / table)
        margins = {r["margin"] for r in lines(tmp_path / table / "train.jsonl")}
        assert margins == ({0.0} if table == "none" else set(MARGIN_TABLES[table].values())), table


def test_launch_validates_every_field_and_stores_nothing_when_refused(preference_batch, researcher, tiny_base):
    batch = preference_batch(helpfulness=12)
    cases = [
        ({"batches": []}, "batches", "at least one"),
        ({"batches": ["2031-W01"]}, "batches", "No batch 2031-W01"),
        ({"sources": ["nope"]}, "sources", "nope"),
        ({"focus": "vibes"}, "focus", "helpfulness or safety"),
        ({"margin_table": "huge"}, "margin_table", "none, small, large"),
        ({"learning_rate": 5}, "learning_rate", "between"),
        ({"learning_rate": "fast"}, "learning_rate", "Not a number"),
        ({"epochs": 0}, "epochs", "between"),
        ({"max_length": 4}, "max_length", "between"),
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
        run_launch(researcher=researcher, kind="reward_model", focus="helpfulness", batches=[str(batch)], base=tiny_base)


def test_only_researchers_launch(preference_batch, tiny_base, django_user_model):
    batch = preference_batch(helpfulness=8)
    annotator = django_user_model.objects.get(username="ann")
    with pytest.raises(PermissionDenied):
        run_launch(researcher=annotator, kind="reward_model", focus="helpfulness", batches=[str(batch)], base=tiny_base)
    assert not TrainingRun.objects.exists()
