"""Demonstrations: prompts with ideal answers and rewrites of chosen responses, exported as SFT data."""

import json

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from rest_framework.authtoken.models import Token

from accounts.services import user_create
from annotation.batches.exports import batch_export
from annotation.batches.services import batch_freeze
from annotation.demonstrations import services as demonstrations
from annotation.models import Batch, Demonstration

from ..helpers.preferences import judged_turns
from .conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_a_written_demonstration_keeps_its_context_and_refuses_empty_parts(annotator):
    with pytest.raises(ValidationError) as refused:
        demonstrations.demonstration_write(annotator=annotator, prompt="  ", answer="x")
    assert "prompt" in refused.value.message_dict
    with pytest.raises(ValidationError, match="ideal answer"):
        demonstrations.demonstration_write(annotator=annotator, prompt="Explain tides.", answer="")
    assert not Demonstration.objects.exists()
    demo = demonstrations.demonstration_write(annotator=annotator, prompt="Explain tides.", answer="The Moon pulls…",
                                        system_prompt="Be brief.")
    assert demo.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Explain tides."},
                             {"role": "assistant", "content": "The Moon pulls…"}]
    assert demo.kind == "written" and demo.batch.status == "open"


def test_a_rewrite_replaces_the_chosen_response_in_its_context_once(annotator, offline_variants, make_user):
    turn = judged_turns(annotator, n=1)[0]
    chosen = turn.chosen_generation
    with pytest.raises(ValidationError, match="same as the chosen response"):
        demonstrations.demonstration_rewrite(annotator=annotator, turn=turn, answer=chosen.text)
    with pytest.raises(PermissionDenied):
        demonstrations.demonstration_rewrite(annotator=make_user("other"), turn=turn, answer="Better.")
    demo = demonstrations.demonstration_rewrite(annotator=annotator, turn=turn, answer="A better, fuller answer.")
    assert demo.context == chosen.messages and demo.original == chosen.text and demo.turn == turn
    with pytest.raises(ValidationError, match="rewritten already"):
        demonstrations.demonstration_rewrite(annotator=annotator, turn=turn, answer="Another.")


def test_the_sft_export_is_message_lists_and_a_late_one_goes_to_the_follow_on(annotator, offline_variants,
                                                                             make_user, tmp_path):
    turn = judged_turns(annotator, n=1)[0]
    demonstrations.demonstration_write(annotator=annotator, prompt="Explain tides.", answer="The Moon pulls…")
    demonstrations.demonstration_rewrite(annotator=annotator, turn=turn, answer="A better answer.")
    batch = batch_freeze(batch=Batch.objects.get(), admin=make_user("adm", "admin"), force=True)
    manifest = batch_export(batch=batch, admin=make_user("adm2", "admin"), out_dir=tmp_path, formats=["sft"])
    assert manifest["counts"]["demonstrations"] == 2
    rows = [json.loads(line) for line in (tmp_path / f"{batch}.sft.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["written", "rewrite"]
    assert rows[0]["messages"][-1] == {"role": "assistant", "content": "The Moon pulls…"}
    assert rows[1]["messages"][:-1] == turn.chosen_generation.messages
    late = demonstrations.demonstration_write(annotator=annotator, prompt="Late.", answer="Not too late.")
    assert str(late.batch) == f"{batch}.1"
    assert batch.demonstrations.count() == 2


def test_pages_and_api(client, annotator, offline_variants):
    turn = judged_turns(annotator, n=1)[0]
    client.login(username="ann", password=PASSWORD)
    assert client.post(reverse("annotation:demonstrations"), {"prompt": "", "answer": "x"}).status_code == 400
    response = client.post(reverse("annotation:demonstrations"), {"prompt": "Hi?", "answer": "Hello!"})
    assert response.status_code == 302
    page = client.get(reverse("annotation:rewrite", args=[turn.pk])).content.decode()
    assert "Your better answer" in page
    assert client.post(reverse("annotation:rewrite", args=[turn.pk]), {"answer": "Much better."}).status_code == 302
    assert reverse("annotation:rewrite", args=[turn.pk]) in client.get(reverse("annotation:history")).content.decode()
    headers = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=annotator).key}"}
    listed = client.get(reverse("api-demonstrations"), **headers).json()["results"]
    assert {d["kind"] for d in listed} == {"written", "rewrite"}
    created = client.post(reverse("api-demonstrations"), {"prompt": "Q", "answer": "A"},
                          content_type="application/json", **headers)
    assert created.status_code == 201 and created.json()["context"][-1]["content"] == "Q"
    other = user_create(username="eve", password=PASSWORD, role="annotator")
    eve = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=other).key}"}
    refused = client.post(reverse("api-turn-rewrite", args=[turn.pk]), {"answer": "mine"},
                          content_type="application/json", **eve)
    assert refused.status_code == 404 and refused.json() == {"detail": "Not found."}
