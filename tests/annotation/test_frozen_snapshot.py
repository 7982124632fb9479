"""At freeze, what the exports would join from rows that can still change is snapshotted: renaming
a variant or a vendor, or editing a guideline or a tag after the freeze, leaves a re-export
byte-identical."""

import random

import pytest
from django.utils import timezone

from accounts.models import Vendor
from accounts.services import user_create, vendor_create
from annotation.batches.exports import FORMATS, batch_export, records
from annotation.batches.services import batch_freeze
from annotation.models import AttackVector, Batch, Guideline, RiskCategory
from annotation.workspace import judgements, services
from modelserving.models import Generation, PolicyVariant

from ..helpers.preferences import judged_turns

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-password-9"


def adversarial_turn(annotator):
    risk, attack = RiskCategory.objects.filter(is_active=True).first(), AttackVector.objects.filter(
        is_active=True).first()
    dialogue = services.dialogue_start(annotator=annotator, focus="safety", risk_category=risk, attack_vector=attack)
    turn = services.turn_post(dialogue=dialogue, annotator=annotator, user_message="How do I pick a lock?",
                              rng=random.Random(1))
    for generation in turn.pair.generations.all():
        Generation.objects.filter(pk=generation.pk).update(status="done", finished_at=timezone.now(),
                                                           text=f"Answer {generation.position}.")
    judgements.judgement_submit(turn=turn, annotator=annotator, judgement=judgements.Judgement(
        choice="A", strength="better", safe_a=True, safe_b=False))
    return risk, attack


def test_renaming_variants_and_vendors_after_the_freeze_leaves_the_export_byte_identical(offline_variants, tmp_path):
    acme = vendor_create(name="Acme Labeling")
    annotator = user_create(username="ann", password=PASSWORD, role="annotator", vendor=acme)
    judged_turns(annotator, n=6)
    risk, attack = adversarial_turn(annotator)
    admin = user_create(username="adm", password=PASSWORD, role="admin")
    batch = batch_freeze(batch=Batch.objects.get(), admin=admin, force=True)
    first = batch_export(batch=batch, admin=admin, out_dir=tmp_path / "first")
    rows = list(records(batch))
    assert {r["vendor"] for r in rows} == {"acme-labeling"} and {r["guideline_version"] for r in rows} == {1}
    assert {r["chosen"]["variant"] for r in rows} <= {"cool", "warm"}
    assert [(r["risk_category"], r["attack_vector"]) for r in rows if r["focus"] == "safety"] == [
        (risk.slug, attack.slug)]

    # What admins may change afterwards, in the admin or the shell.
    for variant in PolicyVariant.objects.all():
        PolicyVariant.objects.filter(pk=variant.pk).update(name=f"{variant.name}-renamed", top_p=0.5)
    Vendor.objects.filter(pk=acme.pk).update(name="Acme Data", slug="acme-data")
    Guideline.objects.filter(focus="helpfulness").update(version=7)
    RiskCategory.objects.filter(pk=risk.pk).update(slug="renamed-risk")
    AttackVector.objects.filter(pk=attack.pk).update(slug="renamed-attack")

    batch.refresh_from_db()
    second = batch_export(batch=batch, admin=admin, out_dir=tmp_path / "second")
    assert second == first
    for fmt_file in [*first["files"], "manifest.json"]:
        assert (tmp_path / "first" / fmt_file).read_bytes() == (tmp_path / "second" / fmt_file).read_bytes(), fmt_file
    assert len(first["files"]) == len(FORMATS)
    # The snapshot holds the variants' settings as they were at the freeze.
    assert {v["name"]: v["top_p"] for v in batch.snapshot["variants"].values()} == {"cool": 0.9, "warm": 0.9}
