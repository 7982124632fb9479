"""The API's schema states the constraints its server enforces, so that a client (or schemathesis,
.ci/api_schema.sh) that follows the schema is not refused, and one that breaks it is."""

import pytest
import yaml
from django.core.cache import cache
from rest_framework.test import APIClient

from annotation.models import Demonstration, Dialogue, OverlapPolicy

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def schema(client):
    return yaml.safe_load(client.get("/api/schema/").content)


def _api(user):
    api = APIClient()
    api.force_authenticate(user)
    return api


def test_text_that_must_not_be_blank_says_so_in_the_schema(schema):
    components = schema["components"]["schemas"]
    for component, field in [("TurnPostRequest", "user_message"), ("DemonstrationWriteRequest", "prompt"),
                             ("DemonstrationWriteRequest", "answer"), ("RewriteRequest", "answer")]:
        spec = components[component]["properties"][field]
        assert spec["minLength"] == 1 and spec["pattern"] == r"\S", (component, field)


# Whitespace is what the schema's pattern refuses and what the services strip to nothing: the
# serializer refuses it first, with the service's own message.
def test_whitespace_only_text_is_refused_with_the_services_message(make_user, offline_variants):
    api = _api(make_user("ann"))
    dialogue = api.post("/api/dialogues/", {"focus": "helpfulness"}, format="json").json()
    refused = api.post(f"/api/dialogues/{dialogue['id']}/turns/", {"user_message": " \n\t"}, format="json")
    assert refused.status_code == 400 and refused.json() == {"user_message": ["Write a message first."]}
    empty = api.post(f"/api/dialogues/{dialogue['id']}/turns/", {"user_message": ""}, format="json")
    assert empty.status_code == 400 and empty.json() == {"user_message": ["Write a message first."]}
    written = api.post("/api/demonstrations/", {"prompt": "  ", "answer": "A"}, format="json")
    assert written.status_code == 400 and written.json() == {"prompt": ["Write the prompt first."]}
    assert not Demonstration.objects.exists()


# A turn on an ended dialogue is a conflict with the dialogue's state (409, documented for every
# operation), not malformed input: the same body is accepted on an active dialogue.
def test_a_turn_on_an_ended_dialogue_is_a_conflict(make_user, schema, offline_variants):
    assert "409" in schema["paths"]["/api/dialogues/{id}/turns/"]["post"]["responses"]
    api = _api(make_user("ann"))
    dialogue = api.post("/api/dialogues/", {"focus": "helpfulness"}, format="json").json()
    api.post(f"/api/dialogues/{dialogue['id']}/finish/", format="json")
    assert Dialogue.objects.get(pk=dialogue["id"]).status != Dialogue.Status.ACTIVE
    refused = api.post(f"/api/dialogues/{dialogue['id']}/turns/", {"user_message": "hi"}, format="json")
    assert refused.status_code == 409 and "has ended" in refused.json()["detail"]


def test_the_overlap_policy_s_bounds_are_in_the_schema_and_enforced(make_user, schema):
    spec = schema["components"]["schemas"]["OverlapPolicyRequest"]["properties"]
    assert spec["share"]["minimum"] == 0 and spec["share"]["maximum"] == 1
    assert spec["reviewers"]["minimum"] == 1 and spec["reviewers"]["maximum"] == 10
    assert spec["focus"] == {"$ref": "#/components/schemas/FocusEnum"}
    api = _api(make_user("boss", role="admin"))
    for wrong in ({"reviewers": 11}, {"focus": "kindness"}, {"share": 1.5}):
        body = {"focus": "safety", "share": 0.5, "reviewers": 2, **wrong}
        assert api.put("/api/quality/overlap/", body, format="json").status_code == 400, wrong
    assert api.put("/api/quality/overlap/", {"focus": "safety", "share": 0.5, "reviewers": 10},
                   format="json").status_code == 200
    assert OverlapPolicy.objects.get(focus="safety").reviewers == 10


def test_a_variant_s_bounds_come_from_the_model_into_the_schema(schema):
    spec = schema["components"]["schemas"]["PatchedVariantSettingsRequest"]["properties"]
    assert spec["top_p"]["minimum"] == 0.01 and spec["top_p"]["maximum"] == 1
    assert spec["max_new_tokens"]["minimum"] == 1
    assert spec["temperature_max"]["maximum"] == 2


# DRF coerces: 0 would be stored as the text "0", false as the share 0.0. A JSON body of the wrong
# type is a client's bug and is refused.
def test_a_json_value_of_the_wrong_type_is_refused(make_user):
    annotator = _api(make_user("ann"))
    wrong = annotator.post("/api/demonstrations/", {"prompt": "Q", "answer": "A", "system_prompt": 0}, format="json")
    assert wrong.status_code == 400 and "system_prompt" in wrong.json()
    admin = _api(make_user("boss", role="admin"))
    assert admin.put("/api/quality/overlap/", {"focus": "safety", "share": False, "reviewers": 1},
                     format="json").status_code == 400
    assert admin.put("/api/quality/overlap/", {"focus": "safety", "share": 0.5, "reviewers": 1},
                     format="json").status_code == 200


# maxLength counts the text as sent: DRF trimmed first, so 20,000 spaces and a word passed a
# 20,000-character limit.
def test_max_length_counts_the_text_as_sent(make_user):
    from annotation.text import MAX_MESSAGE_CHARS

    api = _api(make_user("ann"))
    padded = " " * MAX_MESSAGE_CHARS + "x"
    response = api.post("/api/demonstrations/", {"prompt": "Q", "answer": "A", "system_prompt": padded}, format="json")
    assert response.status_code == 400 and "system_prompt" in response.json()


# null, lists and booleans have no form encoding: the API reads JSON bodies (the schema offers
# application/json alone) and answers 415 to the rest; the dataset upload is the one multipart body.
def test_the_api_reads_json_bodies_and_the_upload_alone_is_multipart(make_user, schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if "requestBody" not in operation:
                continue
            expected = ["multipart/form-data"] if path == "/api/sources/import/" else ["application/json"]
            if path != "/api/auth/token/":
                assert list(operation["requestBody"]["content"]) == expected, (method, path)
    api = _api(make_user("res", role="researcher"))
    assert api.post("/api/pairs/", {"messages": "hi"}, format="multipart").status_code == 415
    annotator = _api(make_user("ann"))
    assert annotator.post("/api/dialogues/", {"focus": "helpfulness", "attack_vector": ""},
                          format="multipart").status_code == 415


# since=2026-02-30 is shaped like a date and is none: Django's parser raises ValueError, which was a 500.
def test_the_red_team_results_since_is_a_date_and_a_wrong_one_is_400(make_user, schema):
    parameters = schema["paths"]["/api/safety/red-team/results/"]["get"]["parameters"]
    assert next(p for p in parameters if p["name"] == "since")["schema"] == {"type": "string", "format": "date"}
    api = _api(make_user("res", role="researcher"))
    for since in ("2026-02-30", "", "yesterday"):
        assert api.get("/api/safety/red-team/results/", {"since": since}).status_code == 400, since
    assert api.get("/api/safety/red-team/results/", {"since": "2026-02-28"}).status_code == 200


# An HTML form cannot send a PATCH: a variant's settings are JSON, and a boolean is JSON's own.
def test_a_variant_s_settings_are_json_and_a_boolean_is_a_boolean(make_user, schema):
    from modelserving.models import PolicyVariant
    from modelserving.services import variant_create

    assert list(schema["paths"]["/api/variants/{id}/"]["patch"]["requestBody"]["content"]) == ["application/json"]
    variant = variant_create(name="cool", base_url="http://127.0.0.1:9/v1", model_name="m",
                             temperature_min=0.5, temperature_max=0.8)
    api = _api(make_user("boss", role="admin"))
    url = f"/api/variants/{variant.pk}/"
    assert api.patch(url, {"is_active": "false"}, format="multipart").status_code == 415
    assert api.patch(url, {"is_active": 0}, format="json").status_code == 400
    assert api.patch(url, {"top_p": 0}, format="json").status_code == 400
    assert api.patch(url, {"is_active": False, "top_p": 0.5}, format="json").status_code == 200
    variant = PolicyVariant.objects.get(pk=variant.pk)
    assert (variant.is_active, variant.top_p) == (False, 0.5)


def test_every_list_s_page_counts_from_one_in_the_schema_and_on_the_server(make_user, schema):
    """The generic list views (DRF's paginator) and the APIViews (list_schema) alike: page 0 is not
    a page the schema offers, and the server refuses it."""
    pages = {path: next(p for p in operation["get"].get("parameters", []) if p["name"] == "page")
             for path, operation in schema["paths"].items()
             if "get" in operation and any(p["name"] == "page" for p in operation["get"].get("parameters", []))}
    assert "/api/variants/" in pages and "/api/dialogues/" in pages
    assert {path: page["schema"].get("minimum") for path, page in pages.items()} == {path: 1 for path in pages}
    admin = _api(make_user("page-admin", role="admin"))
    assert admin.get("/api/variants/?page=0").status_code in (400, 404)


# A NUL in a query string is refused 400 before any view (core.middleware.RefuseNulCharacters): each
# free-text query parameter states it in its pattern, which admits the values the filters take.
def test_free_text_query_parameters_say_they_hold_no_nul(schema):
    import re

    free = {}
    for route, path in schema["paths"].items():
        for method, operation in path.items():
            for parameter in operation.get("parameters", []):
                spec = parameter["schema"]
                if parameter["in"] == "query" and spec.get("type") == "string" and "format" not in spec \
                        and "enum" not in spec:
                    free[(route, method, parameter["name"])] = spec.get("pattern")
    assert ("/api/safety/red-team/results/", "get", "vendor") in free
    assert all(pattern is not None for pattern in free.values()), free
    for pattern in set(free.values()):
        assert re.search(pattern, "cool variant") and not re.search(pattern, "a\x00b")
