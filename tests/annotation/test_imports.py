"""Each importer on small files in its real format, written here; malformed files import nothing."""

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from annotation.batches.imports import preferences_import
from annotation.models import ImportedComparison, PreferenceSource

pytestmark = pytest.mark.django_db

HH = [
    {"chosen": "\n\nHuman: How do I make tea?\n\nAssistant: Boil water, steep the leaves for three minutes.",
     "rejected": "\n\nHuman: How do I make tea?\n\nAssistant: I don't know."},
    {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant: Why did the chicken...",
     "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant: No."},
]
SHP = [
    {"post_id": "a1", "domain": "askscience_train", "upvote_ratio": 0.9, "history": "Why is the sky blue?",
     "c_root_id_A": "x", "c_root_id_B": "y", "created_at_utc_A": 1, "created_at_utc_B": 2, "score_A": 50,
     "score_B": 3, "human_ref_A": "Rayleigh scattering.", "human_ref_B": "Because.", "labels": 1,
     "seconds_difference": 1.0, "score_ratio": 16.7},
    {"post_id": "a2", "domain": "askscience_train", "upvote_ratio": 0.9, "history": "What is DNA?",
     "c_root_id_A": "x", "c_root_id_B": "y", "created_at_utc_A": 1, "created_at_utc_B": 2, "score_A": 1,
     "score_B": 9, "human_ref_A": "A molecule.", "human_ref_B": "The molecule that carries genetic information.",
     "labels": 0, "seconds_difference": 1.0, "score_ratio": 9.0},
]
ULTRA = [
    {"prompt": "Name a prime.", "prompt_id": "p1",
     "chosen": [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "7"}],
     "rejected": [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "8"}],
     "messages": [], "score_chosen": 9.0, "score_rejected": 2.0},
]
TRL = [
    {"prompt": [{"role": "user", "content": "Capital of France?"}],
     "chosen": [{"role": "assistant", "content": "Paris."}], "rejected": [{"role": "assistant", "content": "Rome."}],
     "margin": 0.5},
    {"prompt": "2+2?", "chosen": "4", "rejected": "5"},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def admin(django_user_model):
    from accounts.services import user_create

    return user_create(username="boss", password="a-long-password-9", role="admin")


def test_hh_rlhf_transcripts(admin, tmp_path):
    report = preferences_import(path=write_jsonl(tmp_path / "hh.jsonl", HH), kind="hh-rlhf",
                                source_name="hh-harmless", admin=admin, focus="safety")
    assert report.imported == 2 and report.duplicates == 0
    second = ImportedComparison.objects.get(line=2)
    assert second.context == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                              {"role": "user", "content": "Tell me a joke"}]
    assert second.chosen == "Why did the chicken..." and second.rejected == "No." and second.focus == "safety"


def test_shp_from_parquet_follows_the_label(admin, tmp_path):
    path = tmp_path / "shp.parquet"
    pq.write_table(pa.Table.from_pylist(SHP), path)
    report = preferences_import(path=path, kind="shp", source_name="shp", admin=admin)
    assert report.imported == 2
    first, second = ImportedComparison.objects.order_by("line")
    assert (first.chosen, first.rejected) == ("Rayleigh scattering.", "Because.")
    assert second.chosen.startswith("The molecule") and second.context == [{"role": "user", "content": "What is DNA?"}]


def test_ultrafeedback_binarized(admin, tmp_path):
    report = preferences_import(path=write_jsonl(tmp_path / "uf.jsonl", ULTRA), kind="ultrafeedback",
                                source_name="uf", admin=admin)
    row = ImportedComparison.objects.get()
    assert report.imported == 1 and (row.chosen, row.rejected) == ("7", "8")
    assert row.context == [{"role": "user", "content": "Name a prime."}]


def test_trl_preference_format_conversational_and_standard(admin, tmp_path):
    path = tmp_path / "trl.json"
    path.write_text(json.dumps(TRL))
    preferences_import(path=path, kind="trl", source_name="trl", admin=admin)
    first, second = ImportedComparison.objects.order_by("line")
    assert first.margin == 0.5 and first.chosen == "Paris."
    assert second.context == [{"role": "user", "content": "2+2?"}] and second.margin is None


def test_tandems_own_full_export_round_trips(admin, tmp_path, judgeable_turn, annotator):
    from annotation.batches.exports import batch_export
    from annotation.batches.services import batch_freeze
    from annotation.models import Batch
    from annotation.workspace import judgements
    from annotation.workspace.judgements import Judgement

    judgements.judgement_submit(turn=judgeable_turn(), annotator=annotator,
                              judgement=Judgement(choice="A", strength="better"))
    judgements.judgement_submit(turn=judgeable_turn(), annotator=annotator,
                              judgement=Judgement(both_unusable=True, unusable_reason="noise"))
    batch = batch_freeze(batch=Batch.objects.get(), admin=admin, force=True)
    batch_export(batch=batch, admin=admin, out_dir=tmp_path, formats=("full",))
    report = preferences_import(path=tmp_path / f"{batch}.full.jsonl", kind="tandem", source_name="last-week",
                                admin=admin)
    assert report.imported == 1 and report.skipped == {"no preference": 1}
    row = ImportedComparison.objects.get()
    assert row.strength == "better" and row.margin == pytest.approx(2 / 3) and row.focus == "helpfulness"


def test_duplicates_are_skipped_and_counted(admin, tmp_path):
    path = write_jsonl(tmp_path / "hh.jsonl", HH + [HH[0]])
    first = preferences_import(path=path, kind="hh-rlhf", source_name="hh", admin=admin)
    assert (first.imported, first.duplicates) == (2, 1)
    again = preferences_import(path=path, kind="hh-rlhf", source_name="hh", admin=admin)
    assert (again.imported, again.duplicates) == (0, 3)
    assert ImportedComparison.objects.count() == 2


@pytest.mark.parametrize("kind, rows, problem", [
    ("hh-rlhf", HH + [{"chosen": "no transcript here", "rejected": "x"}], "line 3: chosen is not a"),
    ("hh-rlhf", HH + [{"chosen": HH[0]["chosen"], "rejected": HH[1]["rejected"]}], "line 3: chosen and rejected"),
    ("shp", SHP + [{**SHP[0], "labels": 2}], "line 3: labels must be"),
    ("ultrafeedback", ULTRA + [{**ULTRA[0], "chosen": [{"role": "user", "content": "x"}]}],
     "line 2: chosen and rejected must end"),
    ("trl", TRL + [{"prompt": "x", "chosen": "y"}], "line 3: rejected must be"),
])
def test_a_malformed_record_imports_nothing_and_names_the_line(admin, tmp_path, kind, rows, problem):
    with pytest.raises(ValidationError, match=problem):
        preferences_import(path=write_jsonl(tmp_path / "data.jsonl", rows), kind=kind, source_name="s", admin=admin)
    assert not ImportedComparison.objects.exists() and not PreferenceSource.objects.exists()


TANDEM = {"schema_version": 1, "context": "Hi", "chosen": {"text": "Hello!"}, "rejected": {"text": "Go away."},
          "strength": "better", "margin_small": 2 / 3, "focus": "helpfulness"}


@pytest.mark.parametrize("kind, rows, problem", [
    # Numbers a database cannot hold or a loss should never see: refused per line, never a 500.
    ("trl", TRL + [{**TRL[0], "margin": 1e30}], "line 3: margin 1e+30 is out of range"),
    ("trl", TRL + [{**TRL[0], "margin": 10**400}], "line 3: margin 1000000000000000000000000000000000000"),
    ("trl", TRL + [{**TRL[0], "margin": float("nan")}], "line 3: margin nan is out of range"),
    ("trl", TRL + [{**TRL[0], "margin": True}], "line 3: margin must be a number"),
    ("tandem", [TANDEM, {**TANDEM, "chosen": {"text": "Hi!"}, "margin_small": 10**30}],
     "line 2: margin_small 1000000000000000000000000000000 is out of range"),
    ("tandem", [TANDEM, {**TANDEM, "chosen": {"text": "Hi!"}, "focus": "x" * 10_000}], "line 2: unknown focus 'xxx"),
    # Text PostgreSQL refuses.
    ("tandem", [{**TANDEM, "chosen": {"text": "Hel\x00lo"}}], "line 1: chosen.text contains a NUL character"),
    ("trl", [{**TRL[0], "prompt": [{"role": "user", "content": "a\x00b"}]}], "line 1: prompt contains a NUL"),
])
def test_out_of_range_values_are_refused_per_line_and_import_nothing(admin, tmp_path, kind, rows, problem):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))  # NaN is written as JSON's NaN
    with pytest.raises(ValidationError, match=re.escape(problem)):
        preferences_import(path=path, kind=kind, source_name="s", admin=admin)
    assert not ImportedComparison.objects.exists() and not PreferenceSource.objects.exists()
    # Over HTTP: the same per-line answer, a 400.
    client = APIClient()
    client.force_authenticate(admin)
    upload = SimpleUploadedFile("data.jsonl", path.read_bytes())
    response = client.post("/api/sources/import/", {"file": upload, "format": kind, "source": "s"}, format="multipart")
    assert response.status_code == 400 and problem.split(": ")[0] in response.json()["detail"]
    assert not ImportedComparison.objects.exists()


def test_a_margin_within_range_is_kept(admin, tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [{**TANDEM, "margin_small": -3}])
    assert preferences_import(path=path, kind="tandem", source_name="s", admin=admin).imported == 1
    assert ImportedComparison.objects.get().margin == -3.0


def test_broken_json_names_the_line(admin, tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(HH[0]) + "\n{not json\n")
    with pytest.raises(ValidationError, match="line 2: not valid JSON"):
        preferences_import(path=path, kind="hh-rlhf", source_name="s", admin=admin)
    assert not ImportedComparison.objects.exists()


def test_only_admins_import(tmp_path, make_user):
    for role in ("annotator", "researcher"):
        user = make_user(f"u-{role}", role)
        with pytest.raises(PermissionDenied):
            preferences_import(path=write_jsonl(tmp_path / "hh.jsonl", HH), kind="hh-rlhf", source_name="s",
                               admin=user)
        client = APIClient()
        client.force_authenticate(user)
        upload = SimpleUploadedFile("hh.jsonl", b"".join(json.dumps(r).encode() + b"\n" for r in HH))
        response = client.post("/api/sources/import/", {"file": upload, "format": "hh-rlhf", "source": "s"},
                               format="multipart")
        assert response.status_code == 403
    assert not ImportedComparison.objects.exists()


def test_admins_import_over_http(admin):
    client = APIClient()
    client.force_authenticate(admin)
    upload = SimpleUploadedFile("hh.jsonl", b"".join(json.dumps(r).encode() + b"\n" for r in HH))
    response = client.post("/api/sources/import/", {"file": upload, "format": "hh-rlhf", "source": "hh"},
                           format="multipart")
    assert response.status_code == 201 and response.json()["imported"] == 2
    bad = SimpleUploadedFile("bad.jsonl", b"{nope\n")
    response = client.post("/api/sources/import/", {"file": bad, "format": "hh-rlhf", "source": "hh2"},
                           format="multipart")
    assert response.status_code == 400 and "line 1" in response.json()["detail"]
    assert client.get("/api/sources/").json()["results"][0] | {"created_at": None} == {
        "name": "hh", "kind": "hh-rlhf", "focus": "", "description": "", "created_at": None, "comparisons": 2}


TANDEM_ROW = {"schema_version": 1, "context": [{"role": "user", "content": "Hi"}], "strength": "better",
              "chosen": {"text": "Hello!"}, "rejected": {"text": "No."}, "margin_small": 0.66, "focus": "helpfulness"}


# A margin of NaN, Infinity (both valid in Python's JSON), true or "1" reached the reward loss or
# the database; a focus outside the two was stored as it came.
@pytest.mark.parametrize("kind, row, problem", [
    ("trl", {**TRL[0], "margin": float("nan")}, "line 3: margin nan is out of range"),
    ("trl", {**TRL[0], "margin": float("inf")}, "line 3: margin inf is out of range"),
    ("trl", {**TRL[0], "margin": True}, "line 3: margin must be a number"),
    ("tandem", {**TANDEM_ROW, "margin_small": "0.5"}, "line 3: margin_small must be a number"),
    ("tandem", {**TANDEM_ROW, "focus": "style"}, "line 3: unknown focus 'style'"),
])
def test_margins_and_focus_are_checked_per_line(admin, tmp_path, kind, row, problem):
    rows = (TRL[:2] if kind == "trl" else [TANDEM_ROW, {**TANDEM_ROW, "chosen": {"text": "Hey"}}]) + [row]
    with pytest.raises(ValidationError, match=problem):
        preferences_import(path=write_jsonl(tmp_path / "data.jsonl", rows), kind=kind, source_name="s", admin=admin)
    assert not ImportedComparison.objects.exists() and not PreferenceSource.objects.exists()


# --- Sizes: a file, a record and each field are bounded as typed text is --------------------------


def _trl(prompt="Why?", chosen="Because.", rejected="No."):
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def test_a_small_parquet_file_with_a_huge_text_imports_nothing(admin, tmp_path):
    # 40 MB of one repeated letter compresses to a few KB: the file's size says nothing of its texts.
    path = tmp_path / "bomb.parquet"
    pq.write_table(pa.Table.from_pylist([_trl(), _trl(prompt="x" * 40_000_000)]), path, compression="zstd")
    assert path.stat().st_size < 100_000
    with pytest.raises(ValidationError, match=r"line 2: prompt is 40,000,000 characters long; "
                                              r"at most 20,000 are taken"):
        preferences_import(path=path, kind="trl", source_name="s", admin=admin)
    assert not ImportedComparison.objects.exists()


def test_a_20_mb_jsonl_line_is_refused_before_it_is_read_whole(admin, tmp_path):
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps(_trl()) + "\n" + json.dumps(_trl(chosen="y" * 20_000_000)) + "\n")
    with pytest.raises(ValidationError, match=r"line 2: the line is longer than [\d,]+ bytes"):
        preferences_import(path=path, kind="trl", source_name="s", admin=admin)
    assert not ImportedComparison.objects.exists()


@pytest.mark.parametrize("record, problem", [
    (_trl(chosen="c" * 40_001), "chosen is 40,001 characters long; at most 40,000 are taken"),
    (_trl(prompt=[{"role": "user", "content": "u" * 20_001}]), "a message of prompt is 20,001 characters long"),
    (_trl(prompt=[{"role": "user", "content": "hi"}] * 201), "prompt has 201 messages; at most 200 are taken"),
    (_trl(prompt=[{"role": "user", "content": "u" * 19_000}] * 11),
     "prompt is 209,000 characters long in all; at most 200,000 are taken"),
])
def test_each_field_has_the_limits_of_typed_text(admin, tmp_path, record, problem):
    path = tmp_path / "f.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(ValidationError, match=re.escape(f"line 1: {problem}")):
        preferences_import(path=path, kind="trl", source_name="s", admin=admin)
    assert not ImportedComparison.objects.exists()


def test_the_rows_and_bytes_of_one_import_are_bounded(admin, tmp_path, settings):
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps(_trl(prompt=f"Q{i}?")) + "\n" for i in range(5)))
    settings.IMPORT_MAX_ROWS = 4
    with pytest.raises(ValidationError, match=r"line 5: more than 4 records in one import \(IMPORT_MAX_ROWS\)"):
        preferences_import(path=path, kind="trl", source_name="s", admin=admin)
    settings.IMPORT_MAX_ROWS = 5
    settings.IMPORT_MAX_BYTES = 100
    with pytest.raises(ValidationError, match=r"at most 0 MiB are imported at once \(IMPORT_MAX_BYTES\)"):
        preferences_import(path=path, kind="trl", source_name="s", admin=admin)
    assert not ImportedComparison.objects.exists()
    settings.IMPORT_MAX_BYTES = 10_000
    assert preferences_import(path=path, kind="trl", source_name="s", admin=admin).imported == 5


def test_a_json_array_is_read_as_a_stream(admin, tmp_path, monkeypatch):
    path = tmp_path / "array.json"
    path.write_text(json.dumps([_trl(prompt=f"Q{i}?") for i in range(3)] + [{"prompt": "x"}]))
    # Never the whole file at once: reading it whole would call Path.read_text or json.load.
    monkeypatch.setattr("pathlib.Path.read_text", lambda *a, **k: pytest.fail("read whole"))
    monkeypatch.setattr("json.load", lambda *a, **k: pytest.fail("read whole"))
    with pytest.raises(ValidationError, match=r"line 4: "):
        preferences_import(path=path, kind="trl", source_name="s", admin=admin)
    path.write_bytes(b'[{"prompt": "Q?", "chosen": "A", "rejected": "B", "margin": 0.5}]')
    report = preferences_import(path=path, kind="trl", source_name="s", admin=admin)
    assert report.imported == 1 and ImportedComparison.objects.get().margin == 0.5
    path.write_bytes(b'[{"prompt": "Q?", "chosen": "A", ')
    with pytest.raises(ValidationError, match="not valid JSON"):
        preferences_import(path=path, kind="trl", source_name="t", admin=admin)
    path.write_bytes(b'{"prompt": "Q?"}')
    with pytest.raises(ValidationError, match="line 1: a .json file must hold an array of records"):
        preferences_import(path=path, kind="trl", source_name="t", admin=admin)


def test_an_upload_over_the_limit_is_refused_over_http(admin, settings):
    client = APIClient()
    client.force_authenticate(admin)
    settings.IMPORT_MAX_BYTES = 1000
    upload = SimpleUploadedFile("big.jsonl", b"".join(json.dumps(_trl(prompt=f"Q{i}?")).encode() + b"\n"
                                                      for i in range(100)))
    response = client.post("/api/sources/import/", {"file": upload, "format": "trl", "source": "big"},
                           format="multipart")
    assert response.status_code == 400 and "IMPORT_MAX_BYTES" in response.json()["detail"]
    assert not PreferenceSource.objects.filter(name="big").exists()
