import pytest
from django.urls import reverse

from accounts.services import user_create
from modelserving.models import Generation, Pair

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-password-9"


@pytest.fixture
def annotator_client(client):
    user_create(username="ann", password=PASSWORD, role="annotator")
    client.login(username="ann", password=PASSWORD)
    return client


@pytest.fixture
def researcher_client(client):
    user_create(username="res", password=PASSWORD, role="researcher")
    client.login(username="res", password=PASSWORD)
    return client


def test_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/pairs/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content.lower()
    assert b"<script>" not in docs.content, "no inline script, so the CSP holds"


def test_pairs_need_an_account(client, variant_factory, model_server):
    variant_factory("cool", model_server)
    response = client.post("/api/pairs/", {"messages": [{"role": "user", "content": "hi"}]},
                           content_type="application/json")
    assert response.status_code in (401, 403)
    assert not Pair.objects.exists()


def test_annotators_do_not_see_which_variant_answered(annotator_client, offline_variants):
    # Pairs are staff business: annotators reach theirs through their dialogues only.
    response = annotator_client.post("/api/pairs/", {"messages": [{"role": "user", "content": "hi"}]},
                                     content_type="application/json")
    assert response.status_code == 403 and not Pair.objects.exists()
    from django.contrib.auth.models import User

    from annotation.workspace import services as annotation

    dialogue = annotation.dialogue_start(annotator=User.objects.get(username="ann"), focus="helpfulness")
    turn = annotation.turn_post(dialogue=dialogue, annotator=dialogue.annotator, user_message="hi")
    assert annotator_client.get(f"/api/pairs/{turn.pair_id}/").status_code == 403
    detail = annotator_client.get(f"/api/generations/{turn.pair.generations.first().pk}/").json()
    assert not {"variant", "temperature", "seed", "model_name", "position"} & set(detail)
    assert detail["status"] == "queued"


def test_researchers_see_the_sampling_record(researcher_client, variant_factory, model_server):
    variant_factory("cool", model_server)
    response = researcher_client.post("/api/pairs/", {"messages": [{"role": "user", "content": "hi"}]},
                                      content_type="application/json")
    body = researcher_client.get(f"/api/pairs/{response.json()['id']}/").json()
    assert body["strategy"] == "one_variant_two_temperatures"
    assert {g["variant"] for g in body["generations"]} == {"cool"}
    assert all("seed" in g and "temperature" in g for g in body["generations"])
    assert researcher_client.get("/api/variants/").json()["results"][0]["name"] == "cool"


def test_annotators_cannot_read_other_peoples_generations(client, offline_variants):
    from annotation.workspace import services as annotation

    a1 = user_create(username="a1", password=PASSWORD, role="annotator")
    user_create(username="a2", password=PASSWORD, role="annotator")
    dialogue = annotation.dialogue_start(annotator=a1, focus="helpfulness")
    turn = annotation.turn_post(dialogue=dialogue, annotator=a1, user_message="hi")
    client.login(username="a2", password=PASSWORD)
    assert client.get(f"/api/generations/{turn.pair.generations.first().pk}/").status_code == 404
    assert client.get("/api/variants/").status_code == 403


def test_malformed_context_is_a_400_naming_the_problem_and_stores_nothing(researcher_client, offline_variants):
    response = researcher_client.post(
        "/api/pairs/", {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        content_type="application/json")
    assert response.status_code == 400
    assert "must be the user's" in response.json()["messages"][0]
    response = researcher_client.post("/api/pairs/", {"messages": []}, content_type="application/json")
    assert response.status_code == 400
    assert not Generation.objects.exists()


def test_no_active_variant_is_a_503_with_the_reason(researcher_client):
    response = researcher_client.post("/api/pairs/", {"messages": [{"role": "user", "content": "hi"}]},
                                     content_type="application/json")
    assert response.status_code == 503
    assert "No active policy variant" in response.json()["detail"]


def test_variant_page_lists_variants_for_researchers(researcher_client, variant_factory, model_server):
    variant_factory("cool", model_server)
    response = researcher_client.get(reverse("modelserving:variants"))
    assert response.status_code == 200 and b"cool" in response.content


def test_an_admin_changes_sampling_settings_but_not_the_endpoint(client, offline_variants):
    variant = offline_variants[0]
    user_create(username="adm", password=PASSWORD, role="admin")
    user_create(username="res", password=PASSWORD, role="researcher")
    client.login(username="res", password=PASSWORD)
    url = f"/api/variants/{variant.pk}/"
    assert client.get(url).json()["max_new_tokens"] == variant.max_new_tokens
    assert client.patch(url, {"max_new_tokens": 32}, content_type="application/json").status_code == 403
    client.login(username="adm", password=PASSWORD)
    changed = client.patch(url, {"max_new_tokens": 32, "is_active": False}, content_type="application/json")
    assert changed.status_code == 200 and changed.json()["max_new_tokens"] == 32 and not changed.json()["is_active"]
    endpoint = client.patch(url, {"base_url": "http://elsewhere:1/v1"}, content_type="application/json")
    assert endpoint.status_code == 400 and "base_url" in endpoint.json()
    bad = client.patch(url, {"temperature_min": 1.5, "temperature_max": 0.5}, content_type="application/json")
    assert bad.status_code == 400
    variant.refresh_from_db()
    assert (variant.base_url, variant.max_new_tokens, variant.temperature_min) == ("http://127.0.0.1:9/v1", 32, 0.6)
