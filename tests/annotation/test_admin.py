"""The Django admin and frozen batches: deleting what a frozen batch holds is refused on the page,
never by the database's trigger as a server error."""

import pytest

from accounts.services import user_create
from annotation.batches.services import batch_freeze
from annotation.models import Batch, Dialogue, Turn
from annotation.workspace import judgements
from modelserving.models import Generation

from ..faults.seed_judgeable import main as seed

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-password-9"


@pytest.fixture
def frozen_turns():
    seed(1, 2)
    for turn in Turn.objects.select_related("dialogue"):
        judgements.judgement_submit(turn=turn, annotator=turn.dialogue.annotator,
                                  judgement=judgements.Judgement(choice="A", strength="better"))
    batch_freeze(batch=Batch.objects.get(), force=True,
                 admin=user_create(username="boss", password=PASSWORD, role="admin"))
    return list(Turn.objects.all())


@pytest.fixture
def superuser_client(client, django_user_model):
    django_user_model.objects.create_superuser(username="root", password=PASSWORD, email="root@example.org")
    client.login(username="root", password=PASSWORD)
    return client


def unreferenced_generation(turn) -> Generation:
    """The generation of a frozen pair that no foreign key protects (not shown as A, not chosen)."""
    return turn.pair.generations.exclude(pk__in=[turn.left_generation_id, turn.chosen_generation_id]).get()


def test_deleting_a_frozen_generation_in_the_admin_is_refused(superuser_client, frozen_turns):
    generation = unreferenced_generation(frozen_turns[0])
    url = f"/admin/modelserving/generation/{generation.pk}/delete/"
    for response in (superuser_client.get(url), superuser_client.post(url, {"post": "yes"})):
        page = response.content.decode()
        assert response.status_code == 200 and "Cannot delete generation" in page
        assert f"generation {generation.pk} " in page and "in a frozen batch" in page
    assert Generation.objects.filter(pk=generation.pk).exists()


def test_the_delete_selected_action_refuses_frozen_rows_with_a_message(superuser_client, frozen_turns):
    generations = [unreferenced_generation(turn).pk for turn in frozen_turns]
    response = superuser_client.post("/admin/modelserving/generation/", {
        "action": "delete_selected", "_selected_action": generations, "post": "yes"})
    assert response.status_code == 200 and "in a frozen batch" in response.content.decode()
    assert Generation.objects.filter(pk__in=generations).count() == 2
    dialogues = [turn.dialogue_id for turn in frozen_turns]
    response = superuser_client.post("/admin/annotation/dialogue/", {
        "action": "delete_selected", "_selected_action": dialogues, "post": "yes"})
    assert response.status_code == 200 and "in a frozen batch" in response.content.decode()
    assert Dialogue.objects.filter(pk__in=dialogues).count() == 2 and Turn.objects.count() == 2


def test_a_generation_outside_frozen_batches_can_still_be_deleted(superuser_client, variant_factory, monkeypatch):
    from modelserving import services as modelserving

    monkeypatch.setattr("modelserving.tasks.generation_sample.delay_on_commit", lambda *args: None)
    variant = variant_factory("v", base_url="http://127.0.0.1:9/v1", model_name="m")
    generation = modelserving.generation_request(variant=variant, messages=[{"role": "user", "content": "Hi"}])
    response = superuser_client.post(f"/admin/modelserving/generation/{generation.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not Generation.objects.filter(pk=generation.pk).exists()
