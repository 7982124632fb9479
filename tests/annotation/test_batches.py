import hashlib
import json
import random
from collections import Counter

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from rest_framework.test import APIClient

from annotation.batches.exports import batch_export, pseudonym
from annotation.batches.services import SplitRow, batch_freeze, split_plan
from annotation.models import Batch, Turn
from annotation.workspace import judgements, services
from annotation.workspace.judgements import Judgement
from annotation.workspace.selectors import sides
from core.preference_scale import MARGIN_TABLES

pytestmark = pytest.mark.django_db


def fake_turns(n, seed=0):
    rng = random.Random(seed)
    strengths = ["significantly_better", "better", "slightly_better", "negligibly_better"]
    return [SplitRow(pk=i, both_unusable=False, strength=rng.choice(strengths),
                     focus=rng.choice(["helpfulness", "safety"])) for i in range(1, n + 1)]


def test_split_is_deterministic_and_independent_of_row_order():
    turns = fake_turns(500)
    shuffled = turns[:]
    random.Random(3).shuffle(shuffled)
    assert split_plan("2026-W48", turns, share=0.1, maximum=1000) == split_plan(
        "2026-W48", shuffled, share=0.1, maximum=1000)
    assert split_plan("2026-W48", turns, share=0.1, maximum=1000) != split_plan(
        "2026-W49", turns, share=0.1, maximum=1000), "each batch draws its own split"


def test_split_holds_out_the_smaller_of_the_share_and_the_maximum_stratified():
    turns = fake_turns(20_000, seed=1)
    plan = split_plan("2026-W48", turns, share=0.1, maximum=1000)
    assert len(plan) == 1000  # 10 % would be 2,000
    small = split_plan("2026-W48", turns[:3000], share=0.1, maximum=1000)
    assert len(small) == 300
    stratum = lambda t: (t.focus, t.strength)  # noqa: E731
    everywhere = Counter(stratum(t) for t in turns)
    held_out = Counter(stratum(t) for t in turns if t.pk in plan)
    for key, count in everywhere.items():
        assert abs(held_out[key] - 1000 * count / len(turns)) <= 1, key


@pytest.fixture
def admin_user(make_user):
    return make_user("boss", "admin")


@pytest.fixture
def judged_batch(judgeable_turn, annotator):
    strengths = ["significantly_better", "better", "slightly_better", "negligibly_better"]
    for index in range(8):
        focus = "safety" if index % 2 else "helpfulness"
        turn = judgeable_turn(focus)
        judgement = Judgement(choice="AB"[index % 2], strength=strengths[index % 4],
                              safe_a=True if focus == "safety" else None,
                              safe_b=(index % 4 == 1) if focus == "safety" else None)
        if focus == "safety" and judgement.choice == "B" and not judgement.safe_b:
            judgement = Judgement(choice="B", strength=judgement.strength, safe_a=False, safe_b=False)
        judgements.judgement_submit(turn=turn, annotator=annotator, judgement=judgement)
    return Batch.objects.get()


def test_freeze_records_the_split_and_what_the_batch_contains(judged_batch, admin_user, settings):
    settings.HELD_OUT_SHARE = 0.25
    batch = batch_freeze(batch=judged_batch, admin=admin_user, force=True)
    assert batch.is_frozen and batch.frozen_by == admin_user and batch.frozen_at
    assert batch.summary["judgements"] == 8
    assert batch.summary["by_focus"] == {"helpfulness": 4, "safety": 4}
    assert batch.summary["split"] == {"test": 2, "train": 6}
    assert set(batch.summary["policy_variants"]) == {"cool", "warm"}
    assert batch.summary["guideline_versions"] == ["helpfulness v1", "safety v1"]
    assert Counter(Turn.objects.values_list("split", flat=True)) == {"train": 6, "test": 2}


def test_this_weeks_batch_is_frozen_only_when_forced_and_says_what_forcing_does(judged_batch, admin_user):
    with pytest.raises(ValidationError) as refused:
        batch_freeze(batch=judged_batch, admin=admin_user)
    message = refused.value.messages[0]
    assert f"{judged_batch} is this week's" in message and f"follow-on batch, {judged_batch}.1" in message
    judged_batch.refresh_from_db()
    assert not judged_batch.is_frozen and not Turn.objects.exclude(split="").exists()


def test_after_an_early_freeze_later_judgements_go_to_a_follow_on_batch(judged_batch, admin_user, judgeable_turn,
                                                                         annotator):
    # No annotator's finished work is turned away because an admin froze the week early.
    frozen = batch_freeze(batch=judged_batch, admin=admin_user, force=True)
    assert frozen.summary["frozen_early"] is True
    late = judgeable_turn()
    turn, created = judgements.judgement_submit(turn=late, annotator=annotator,
                                              judgement=Judgement(choice="A", strength="better"))
    assert created and turn.batch != frozen
    follow_on = turn.batch
    assert str(follow_on) == f"{frozen}.1" and follow_on.sequence == 1 and not follow_on.is_frozen
    assert (follow_on.iso_year, follow_on.iso_week, follow_on.starts_on) == (frozen.iso_year, frozen.iso_week,
                                                                           frozen.starts_on)
    assert Turn.objects.filter(batch=frozen).count() == 8
    from annotation.batches.selectors import batch_by_label

    assert batch_by_label(str(follow_on)) == follow_on and batch_by_label(str(frozen)) == frozen
    # The follow-on is frozen on its own, early again if need be; the next judgement goes to .2.
    batch_freeze(batch=follow_on, admin=admin_user, force=True)
    later, _ = judgements.judgement_submit(turn=judgeable_turn(), annotator=annotator,
                                         judgement=Judgement(choice="B", strength="better"))
    assert str(later.batch) == f"{frozen}.2"
    with pytest.raises(ValidationError, match="already frozen"):
        batch_freeze(batch=judged_batch, admin=admin_user, force=True)


def test_only_admins_freeze_and_export(judged_batch, annotator, make_user):
    researcher = make_user("res", "researcher")
    for user in (annotator, researcher):
        with pytest.raises(PermissionDenied):
            batch_freeze(batch=judged_batch, admin=user, force=True)
        client = APIClient()
        client.force_authenticate(user)
        label = str(judged_batch)
        assert client.get("/api/batches/").status_code == 403
        assert client.post(f"/api/batches/{label}/freeze/").status_code == 403
        assert client.get(f"/api/batches/{label}/export/full/").status_code == 403
    judged_batch.refresh_from_db()
    assert not judged_batch.is_frozen


def test_export_needs_a_frozen_batch(judged_batch, admin_user, tmp_path):
    with pytest.raises(ValidationError, match="not frozen"):
        batch_export(batch=judged_batch, admin=admin_user, out_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_full_export_reads_back_equal_to_the_database(judged_batch, admin_user, tmp_path):
    batch = batch_freeze(batch=judged_batch, admin=admin_user, force=True)
    manifest = batch_export(batch=batch, admin=admin_user, out_dir=tmp_path)
    rows = [json.loads(line) for line in (tmp_path / f"{batch}.full.jsonl").read_text().splitlines()]
    assert len(rows) == 8 == manifest["files"][f"{batch}.full.jsonl"]["rows"]
    for row in rows:
        turn = Turn.objects.select_related("dialogue", "chosen_generation__variant").get(pk=row["turn_id"])
        a, b = sides(turn)
        chosen = turn.chosen_generation
        rejected = b if chosen.id == a.id else a
        assert row["batch"] == str(batch) and row["split"] == turn.split and row["focus"] == turn.dialogue.focus
        assert row["context"] == chosen.messages == chosen.request_body["messages"]
        assert row["chosen"]["text"] == chosen.text and row["rejected"]["text"] == rejected.text
        assert row["chosen"]["side"] == ("A" if chosen.id == a.id else "B")
        assert row["chosen"]["variant"] == chosen.variant.name and row["chosen"]["seed"] == chosen.seed
        assert row["chosen"]["temperature"] == chosen.temperature
        assert row["strength"] == turn.strength
        assert row["margin_small"] == MARGIN_TABLES["small"][turn.strength]
        assert row["margin_large"] == MARGIN_TABLES["large"][turn.strength]
        assert row["safety_bin"] == (turn.safety_bin or None)
        assert row["annotator"] == pseudonym(turn.dialogue.annotator_id) != str(turn.dialogue.annotator_id)
    assert manifest["counts"].get("split=test", 0) + manifest["counts"]["split=train"] == 8
    digest = hashlib.sha256((tmp_path / f"{batch}.full.jsonl").read_bytes()).hexdigest()
    assert manifest["files"][f"{batch}.full.jsonl"]["sha256"] == digest


def test_trl_export_is_conversational_preference_data_with_the_margin(judged_batch, admin_user, tmp_path):
    batch = batch_freeze(batch=judged_batch, admin=admin_user, force=True)
    batch_export(batch=batch, admin=admin_user, out_dir=tmp_path, formats=("trl",))
    rows = [json.loads(line) for line in (tmp_path / f"{batch}.trl.jsonl").read_text().splitlines()]
    assert len(rows) == 8
    for row in rows:
        assert row["prompt"][-1]["role"] == "user"
        assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
        assert row["margin"] in {1.0, 2 / 3, 1 / 3, 0.0}


def test_exporting_twice_gives_byte_identical_files(judged_batch, admin_user, tmp_path):
    batch = batch_freeze(batch=judged_batch, admin=admin_user, force=True)
    batch_export(batch=batch, admin=admin_user, out_dir=tmp_path / "one")
    batch_export(batch=batch, admin=admin_user, out_dir=tmp_path / "two")
    for name in (f"{batch}.full.jsonl", f"{batch}.trl.jsonl", f"{batch}.full.parquet", f"{batch}.csv",
                 "manifest.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_admins_freeze_and_download_over_http(judged_batch, admin_user, settings, tmp_path):
    from annotation.batches.export_jobs import export_run
    from annotation.models import ExportJob

    settings.EXPORT_DIR = tmp_path
    client = APIClient()
    client.force_authenticate(admin_user)
    label = str(judged_batch)
    assert client.post(f"/api/batches/{label}/exports/", {"format": "full"}, format="json").status_code == 409
    refused = client.post(f"/api/batches/{label}/freeze/")
    assert refused.status_code == 409 and "follow-on batch" in refused.json()["detail"]
    frozen = client.post(f"/api/batches/{label}/freeze/", {"force": True}, format="json")
    assert frozen.status_code == 200 and frozen.json()["status"] == "frozen"
    assert client.post(f"/api/batches/{label}/freeze/", {"force": True}, format="json").status_code == 409
    # Nothing is written by a request: a download before the job ran says so and writes nothing.
    assert client.get(f"/api/batches/{label}/export/trl/").status_code == 409
    requested = client.post(f"/api/batches/{label}/exports/", {"format": "trl"}, format="json")
    assert requested.status_code == 202 and requested.json()["status"] == "queued"
    waiting = client.get(f"/api/batches/{label}/export/trl/")
    assert waiting.status_code == 409 and waiting.json()["job"]["status"] == "queued"
    assert not list(tmp_path.rglob("*.jsonl"))
    assert export_run(job_id=ExportJob.objects.get(format="trl").pk).state == "done"  # as the worker runs it
    jobs = client.get(f"/api/batches/{label}/exports/").json()
    assert [(j["format"], j["status"], j["rows"], j["percent"]) for j in jobs] == [("trl", "done", 8, 100)]
    response = client.get(jobs[0]["download"])
    assert response.status_code == 200
    assert len(b"".join(response.streaming_content).splitlines()) == 8
    assert client.post(f"/api/batches/{label}/exports/", {"format": "trl"}, format="json").status_code == 200
    assert client.post(f"/api/batches/{label}/exports/", {"format": "xml"}, format="json").status_code == 400
    assert client.get("/api/batches/2001-W01/export/full/").status_code == 404


def test_the_admins_batch_page_freezes_and_offers_the_exports(client, judged_batch, admin_user, annotator, settings,
                                                               tmp_path):
    from annotation.batches.export_jobs import export_run
    from annotation.models import ExportJob

    settings.EXPORT_DIR = tmp_path
    from .conftest import PASSWORD

    client.login(username="ann", password=PASSWORD)
    assert client.get("/annotate/batches/").status_code == 403
    assert client.post(f"/annotate/batches/{judged_batch}/freeze/").status_code == 403
    assert client.post(f"/annotate/batches/{judged_batch}/exports/request/", {"format": "full"}).status_code == 403
    client.logout()
    client.login(username="boss", password=PASSWORD)
    page = client.get("/annotate/batches/").content.decode()
    assert str(judged_batch) in page and "Freeze early" in page and 'name="force"' in page
    client.post(f"/annotate/batches/{judged_batch}/freeze/")  # not forced: refused, with the reason
    judged_batch.refresh_from_db()
    assert not judged_batch.is_frozen
    assert "follow-on batch" in client.get("/annotate/batches/").content.decode()
    client.post(f"/annotate/batches/{judged_batch}/freeze/", {"force": "1"})
    page = client.get("/annotate/batches/").content.decode()
    assert 'value="full"' in page and f"/annotate/batches/{judged_batch}/export/full/" not in page
    fragment = client.post(f"/annotate/batches/{judged_batch}/exports/request/", {"format": "full"},
                           headers={"HX-Request": "true"}).content.decode()
    # While it runs, the fragment shows a progress bar and polls itself.
    assert "<progress" in fragment and 'hx-trigger="every 1s"' in fragment
    assert client.get(f"/annotate/batches/{judged_batch}/export/full/").status_code == 302  # not ready yet
    export_run(job_id=ExportJob.objects.get().pk)
    fragment = client.get(f"/annotate/batches/{judged_batch}/exports/").content.decode()
    assert f"/annotate/batches/{judged_batch}/export/full/" in fragment and "every 1s" not in fragment
    download = client.get(f"/annotate/batches/{judged_batch}/export/full/")
    assert download.status_code == 200 and len(b"".join(download.streaming_content).splitlines()) == 8


def test_parquet_equals_the_full_jsonl(judged_batch, admin_user, tmp_path):
    import pyarrow.parquet as pq

    batch = batch_freeze(batch=judged_batch, admin=admin_user, force=True)
    batch_export(batch=batch, admin=admin_user, out_dir=tmp_path, formats=("full", "parquet"))
    jsonl = [json.loads(line) for line in (tmp_path / f"{batch}.full.jsonl").read_text().splitlines()]
    assert pq.read_table(tmp_path / f"{batch}.full.parquet").to_pylist() == jsonl


def test_csv_neutralises_formulas(judged_batch, admin_user, tmp_path):
    import csv

    from annotation.batches.export_formats import neutralise

    for hostile in ("=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tx"):
        assert neutralise(hostile) == "'" + hostile
    assert neutralise("plain") == "plain" and neutralise(-3) == -3
    turn = Turn.objects.filter(batch=judged_batch).first()
    chosen = turn.chosen_generation
    chosen.text = "=cmd|' /C calc'!A0"
    chosen.save(update_fields=["text"])
    batch = batch_freeze(batch=judged_batch, admin=admin_user, force=True)
    batch_export(batch=batch, admin=admin_user, out_dir=tmp_path, formats=("csv",))
    with open(tmp_path / f"{batch}.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8
    row = next(r for r in rows if r["turn_id"] == str(turn.pk))
    assert row["chosen_text"] == "'=cmd|' /C calc'!A0"
    assert not [cell for r in rows for cell in r.values() if cell and cell[0] in "=+-@"]


def test_the_trl_export_trains_a_reward_model_unchanged(judged_batch, admin_user, tmp_path, tiny_model_dir):
    """datasets.load_dataset("json") + TRL's RewardTrainer on the file as exported, no glue."""
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    batch = batch_freeze(batch=judged_batch, admin=admin_user, force=True)
    batch_export(batch=batch, admin=admin_user, out_dir=tmp_path, formats=("trl",))
    dataset = load_dataset("json", data_files=str(tmp_path / f"{batch}.trl.jsonl"), split="train")
    assert len(dataset) == 8 and "margin" in dataset.column_names
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = RewardTrainer(model=model, processing_class=tokenizer, train_dataset=dataset, args=RewardConfig(
        output_dir=str(tmp_path / "rm"), per_device_train_batch_size=4, num_train_epochs=1, max_length=256,
        learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True))
    result = trainer.train()
    assert result.training_loss == result.training_loss and result.training_loss > 0  # finite
    assert any(not torch_equal(before[name], p) for name, p in model.named_parameters())
    assert [entry for entry in trainer.state.log_history if "loss" in entry]


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_batch_statistics_page_and_json(client, judged_batch, admin_user, annotator):
    from annotation.batches.stats import batch_statistics

    from .conftest import PASSWORD

    stats = batch_statistics(judged_batch)
    assert stats["judgements"] == 8
    assert stats["by_focus"] == {"helpfulness": 4, "safety": 4}
    assert sum(stats["by_strength"].values()) == 8
    assert stats["turns_per_dialogue"] == {1: 8}
    turns = list(Turn.objects.filter(batch=judged_batch))
    left = sum(t.chosen_generation_id == t.left_generation_id for t in turns)
    assert stats["left_chosen_share"]["overall"] == round(left / 8, 4)
    assert stats["left_chosen_share"]["per_annotator"] == {"ann": round(left / 8, 4)}
    interval = stats["left_chosen_share"]["per_annotator_interval"]["ann"]
    assert interval["n"] == 8 and interval["ci95"][0] <= left / 8 <= interval["ci95"][1]
    assert stats["left_chosen_share"]["flagged"] == (["ann"] if interval["biased"] else [])
    assert stats["per_annotator_volume"] == {"ann": 8}
    rates = stats["variant_win_rate"]
    assert sum(v["won"] for v in rates.values()) == 8 and sum(v["compared"] for v in rates.values()) == 16
    assert sum(stats["response_tokens"]["chosen"]["buckets"].values()) == 8

    client.login(username="ann", password=PASSWORD)
    assert client.get(f"/annotate/batches/{judged_batch}/stats/").status_code == 403
    client.logout()
    client.login(username="boss", password=PASSWORD)
    page = client.get(f"/annotate/batches/{judged_batch}/stats/")
    html = page.content.decode()
    assert page.status_code == 200 and html.count("<svg") == 9 and "Position bias" in html
    assert "style=" not in html.split("<main>")[1], "no inline styles (CSP)"
    assert client.get(f"/annotate/batches/{judged_batch}/stats/?format=json").json() == json.loads(
        json.dumps(stats))


def test_every_write_path_is_refused_after_freeze(client, judged_batch, admin_user, annotator):
    from django.contrib.admin.sites import site

    from annotation.models import Dialogue

    from .conftest import PASSWORD

    batch = batch_freeze(batch=judged_batch, admin=admin_user, force=True)
    before = list(Turn.objects.filter(batch=batch).order_by("pk").values())
    turn = Turn.objects.filter(batch=batch).select_related("dialogue").first()
    # A different judgement of a frozen turn, through the service and through the API.
    with pytest.raises(ValidationError):
        judgements.judgement_submit(turn=turn, annotator=annotator,
                                  judgement=Judgement(both_unusable=True, unusable_reason="changed my mind"))
    api = APIClient()
    api.force_authenticate(annotator)
    assert api.post(f"/api/turns/{turn.pk}/judgement/", {"both_unusable": True, "unusable_reason": "x"},
                    format="json").status_code == 409
    with pytest.raises(ValidationError):
        services.generation_retry(turn=turn, annotator=annotator, side="A")
    # The admin shows frozen data but neither changes nor deletes it.
    client.login(username="boss", password=PASSWORD)
    batch_admin = site._registry[Batch]
    dialogue_admin = site._registry[Dialogue]
    request = client.get("/admin/").wsgi_request
    assert not batch_admin.has_change_permission(request, batch)
    assert not batch_admin.has_delete_permission(request, batch)
    assert dialogue_admin.frozen_among([turn.dialogue]) == [turn.dialogue]
    refused = client.post(f"/admin/annotation/dialogue/{turn.dialogue_id}/delete/", {"post": "yes"})
    assert refused.status_code == 200 and "in a frozen batch" in refused.content.decode()
    assert list(Turn.objects.filter(batch=batch).order_by("pk").values()) == before
