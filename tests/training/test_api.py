"""The researchers' API beyond launching: serving a checkpoint, a run's files, the leaderboard, and an
evaluation on the researcher's own prompts."""

import json

import pytest
from rest_framework.authtoken.models import Token

from accounts.services import user_create
from training.checkpoints import checkpoint_register
from training.inputs import prepare
from training.leaderboard import comparisons, leaderboard
from training.models import Checkpoint, TrainingRun

from ..helpers.preferences import judged_turns
from .conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client, researcher):
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {Token.objects.create(user=researcher).key}"
    return client


def test_a_policy_checkpoint_is_served_through_the_api(api, tiny_model_dir, settings):
    settings.POLICY_SERVING = "external"
    settings.VARIANT_ALLOWED_HOSTS = [*settings.VARIANT_ALLOWED_HOSTS, "vllm-rlhf-v2"]
    policy = checkpoint_register(name="tiny-policy", kind=Checkpoint.Kind.POLICY, path=tiny_model_dir)
    rm = checkpoint_register(name="tiny-rm", kind=Checkpoint.Kind.REWARD_MODEL, focus="helpfulness",
                             path=tiny_model_dir)
    url = f"/api/training/checkpoints/{policy.pk}/serve/"
    refused = api.post(url, {"name": "rlhf-v2"}, content_type="application/json")
    assert refused.status_code == 400 and "vllm serve" in refused.content.decode()
    served = api.post(url, {"name": "rlhf-v2", "base_url": "http://vllm-rlhf-v2:8000/v1", "model_name": "rlhf-v2",
                            "temperature_min": 0.5, "temperature_max": 0.8, "max_new_tokens": 64},
                      content_type="application/json")
    assert served.status_code == 201, served.content
    assert served.json()["name"] == "rlhf-v2" and served.json()["max_new_tokens"] == 64
    policy.refresh_from_db()
    assert policy.variant.name == "rlhf-v2"
    assert api.post(f"/api/training/checkpoints/{rm.pk}/serve/", {"name": "rm-as-policy"},
                    content_type="application/json").status_code == 400
    annotator = user_create(username="ann", password=PASSWORD, role="annotator")
    api.defaults["HTTP_AUTHORIZATION"] = f"Token {Token.objects.create(user=annotator).key}"
    assert api.post(url, {"name": "x"}, content_type="application/json").status_code == 403


def test_a_runs_files_are_read_by_name_and_nothing_else(api, researcher, tmp_path, tiny_base):
    out = tmp_path / "out"
    out.mkdir()
    (out / "samples.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "secret.txt").write_text("no")
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.POLICY_EVAL, base=tiny_base, launched_by=researcher,
                                     config={}, artifacts={"out": str(out)})
    found = api.get(f"/api/training/runs/{run.pk}/files/samples.jsonl")
    assert found.status_code == 200 and b"".join(found.streaming_content) == b'{"a": 1}\n'
    assert api.get(f"/api/training/runs/{run.pk}/files/eval.json").status_code == 404  # not written
    assert api.get(f"/api/training/runs/{run.pk}/files/..%2Fsecret.txt").status_code == 404
    assert api.get(f"/api/training/runs/{run.pk}/files/secret.txt").status_code == 404
    # A link in the run folder to a file outside it serves nothing; a folder named like a file neither.
    (out / "gain.json").symlink_to(tmp_path / "secret.txt")
    assert api.get(f"/api/training/runs/{run.pk}/files/gain.json").status_code == 404
    (out / "eval.json").mkdir()
    assert api.get(f"/api/training/runs/{run.pk}/files/eval.json").status_code == 404
    # A link that stays inside the folder is the file it names.
    (out / "kept.jsonl").symlink_to(out / "samples.jsonl")
    assert b"".join(api.get(f"/api/training/runs/{run.pk}/files/kept.jsonl").streaming_content) == b'{"a": 1}\n'


def test_the_leaderboard_api_is_the_pages_figures(api, offline_variants):
    judged_turns(user_create(username="ann", password=PASSWORD, role="annotator"), n=10)
    data = api.get("/api/training/leaderboard/").json()
    expected = leaderboard(comparisons(), resamples=300)
    assert [row["variant"] for row in data["leaderboard"]] == [row["variant"] for row in expected]
    assert [row["score"] for row in data["leaderboard"]] == [row["score"] for row in expected]
    assert data["groups"] == 1
    assert api.get("/api/training/leaderboard/", {"batch": "1999-W01"}).status_code == 404


def test_an_evaluation_takes_the_researchers_own_prompts(api, offline_variants, tiny_base, tiny_model_dir,
                                                          tmp_path, monkeypatch):
    monkeypatch.setattr("training.tasks.run_execute.apply_async", lambda *args, **kwargs: None)
    checkpoint_register(name="rm-h", kind=Checkpoint.Kind.REWARD_MODEL, focus="helpfulness", path=tiny_model_dir)
    body = {"kind": "policy_eval", "variants": ["cool", "warm"], "helpfulness_rm": "rm-h", "base": "tiny-llama",
            "prompts": ["First held-out prompt", "  ", "Second one"]}
    created = api.post("/api/training/policy-runs/", body, content_type="application/json")
    assert created.status_code == 201, created.content
    run = TrainingRun.objects.get(pk=created.json()["id"])
    assert run.data["prompts"] == ["First held-out prompt", "Second one"] and run.data["batches"] == []
    flags, counts = prepare(run, tmp_path / "data", tmp_path / "out")
    written = [json.loads(line) for line in flags["--prompts"].read_text().splitlines()]
    assert counts == {"prompts": 2}
    assert written == [{"messages": [{"role": "user", "content": "First held-out prompt"}]},
                       {"messages": [{"role": "user", "content": "Second one"}]}]
    # Training runs read the batches, never a prompt list; an evaluation without either is refused.
    refused = api.post("/api/training/policy-runs/", {**body, "kind": "ppo"}, content_type="application/json")
    assert refused.status_code == 400 and "prompts" in refused.json()
    empty = api.post("/api/training/policy-runs/", {**body, "prompts": []}, content_type="application/json")
    assert empty.status_code == 400 and "batches" in empty.json()
    assert TrainingRun.objects.count() == 1
