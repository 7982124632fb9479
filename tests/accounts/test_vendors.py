"""Vendors: annotators belong to one, and exports and statistics carry it."""

import pytest
from django.core.exceptions import ValidationError

from accounts.services import user_create, user_vendor_set, vendor_create
from annotation.batches.exports import records
from annotation.batches.services import batch_freeze
from annotation.models import Batch

from ..helpers.preferences import judged_turns

PASSWORD = "a-long-password-9"
pytestmark = pytest.mark.django_db


def test_a_vendor_name_is_unique_and_annotators_join_one():
    acme = vendor_create(name="Acme Labeling")
    assert acme.slug == "acme-labeling"
    with pytest.raises(ValidationError, match="exists already"):
        vendor_create(name="acme labeling")
    user = user_create(username="ann", password=PASSWORD, role="annotator", vendor=acme)
    assert user.profile.vendor == acme
    user_vendor_set(user=user, vendor=None)
    user.profile.refresh_from_db()
    assert user.profile.vendor is None


def test_the_export_names_each_judgements_vendor(offline_variants):
    acme = vendor_create(name="Acme Labeling")
    judged_turns(user_create(username="a1", password=PASSWORD, role="annotator", vendor=acme), n=2)
    judged_turns(user_create(username="a2", password=PASSWORD, role="annotator"), n=1, start=2)
    batch = batch_freeze(batch=Batch.objects.get(), admin=user_create(username="adm", password=PASSWORD, role="admin"),
                         force=True)
    assert sorted(str(r["vendor"]) for r in records(batch)) == ["None", "acme-labeling", "acme-labeling"]


def test_batch_statistics_split_by_vendor(offline_variants):
    from annotation.batches.stats import batch_statistics

    acme = vendor_create(name="Acme Labeling")
    judged_turns(user_create(username="a1", password=PASSWORD, role="annotator", vendor=acme), n=3)
    judged_turns(user_create(username="a2", password=PASSWORD, role="annotator"), n=2, start=3)
    batch = Batch.objects.get()
    assert batch_statistics(batch)["by_vendor"] == {"acme-labeling": 3, "none": 2}
    acme_only = batch_statistics(batch, vendor="acme-labeling")
    assert acme_only["judgements"] == 3 and set(acme_only["per_annotator_volume"]) == {"a1"}
    assert sum(v["compared"] for v in acme_only["variant_win_rate"].values()) == 6
    assert batch_statistics(batch, vendor="none")["per_annotator_volume"] == {"a2": 2}


def test_the_admins_add_vendor_follows_the_same_rule(client, django_user_model):
    from accounts.models import Vendor

    user_create(username="boss", password="a-long-password-9", role="admin")
    client.login(username="boss", password="a-long-password-9")
    added = client.post("/admin/accounts/vendor/add/", {"name": "Acme Labeling", "slug": "acme", "notes": ""})
    assert added.status_code == 302 and Vendor.objects.get().slug == "acme"
    again = client.post("/admin/accounts/vendor/add/", {"name": "ACME labeling", "slug": "acme-2", "notes": ""})
    assert again.status_code == 200 and "exists already" in again.content.decode()
    assert Vendor.objects.count() == 1
