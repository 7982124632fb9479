"""Limits on what one client can do: failed-login lockout (django-axes) on the login page and the
token endpoint, DRF throttles that fail open when the cache is down, no HTTP Basic passwords, a
length limit on free text, and pages on every list endpoint."""

import base64
import logging
import re
from importlib.metadata import version

import pytest
import yaml
from django.test import Client
from packaging.version import Version
from rest_framework.test import APIClient

from bench.processes import ROOT, free_port
from core.throttles import AnonThrottle, UserThrottle

from ..conftest import PASSWORD

pytestmark = pytest.mark.django_db

WRONG = "not-the-password-1"


@pytest.fixture(autouse=True)
def _fresh_cache():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def _login(client, username, password, ip="10.1.1.1", **headers):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=ip, **headers)


# Password guessing on the login page: after AXES_FAILURE_LIMIT misses the right password is refused too.
def test_the_login_page_locks_a_username_out_after_failed_tries(make_user, settings):
    make_user("victim")
    client = Client()
    tries = [_login(client, "victim", WRONG).status_code for _ in range(settings.AXES_FAILURE_LIMIT)]
    assert tries == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    locked = _login(client, "victim", PASSWORD)
    assert locked.status_code == 429 and b"Too many failed logins" in locked.content
    assert "_auth_user_id" not in client.session
    # The same person from elsewhere is not locked out by someone guessing (username and address).
    assert _login(Client(), "victim", PASSWORD, ip="10.2.2.2").status_code == 302


def test_the_token_endpoint_locks_out_too(make_user, settings):
    make_user("victim")
    api = APIClient()
    tries = [api.post("/api/auth/token/", {"username": "victim", "password": WRONG}, format="json",
                      REMOTE_ADDR="10.1.1.1").status_code for _ in range(settings.AXES_FAILURE_LIMIT)]
    assert tries[0] == 400 and tries[-1] in (403, 429)
    locked = api.post("/api/auth/token/", {"username": "victim", "password": PASSWORD}, format="json",
                      REMOTE_ADDR="10.1.1.1")
    assert locked.status_code == 429 and "locked" in locked.json()["detail"]


# Behind a proxy the client's address is the proxy's last X-Forwarded-For entry, for axes as for DRF;
# with no proxy declared, a forged header changes nothing.
@pytest.mark.parametrize("proxies, separate", [(0, False), (1, True)])
def test_axes_reads_the_address_as_drf_does(make_user, settings, proxies, separate):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": proxies}
    make_user("victim")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(Client(), "victim", WRONG, HTTP_X_FORWARDED_FOR="203.0.113.7")
    other = _login(Client(), "victim", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.9")
    assert (other.status_code == 302) is separate


def test_anonymous_and_authenticated_requests_are_throttled(make_user, monkeypatch):
    monkeypatch.setattr(AnonThrottle, "THROTTLE_RATES", {**AnonThrottle.THROTTLE_RATES, "anon": "3/min"})
    monkeypatch.setattr(UserThrottle, "THROTTLE_RATES", {**UserThrottle.THROTTLE_RATES, "user": "4/min"})
    anonymous = APIClient()
    # What anyone may call (the schema, accepting an invitation) is throttled per address.
    assert [anonymous.get("/api/schema/").status_code for _ in range(4)] == [200, 200, 200, 429]
    api = APIClient()
    api.force_authenticate(make_user("busy"))
    assert [api.get("/api/dialogues/").status_code for _ in range(5)] == [200, 200, 200, 200, 429]


# A Redis outage must not take the API down with it: throttles let requests through and log why.
def test_throttles_fail_open_when_the_cache_is_down(make_user, monkeypatch, settings, caplog):
    monkeypatch.setattr(UserThrottle, "THROTTLE_RATES", {**UserThrottle.THROTTLE_RATES, "user": "1/min"})
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache",
                                   "LOCATION": f"redis://127.0.0.1:{free_port()}/0"}}
    api = APIClient()
    api.force_authenticate(make_user("during-outage"))
    with caplog.at_level(logging.ERROR, logger="core.throttles"):
        assert [api.get("/api/dialogues/").status_code for _ in range(3)] == [200, 200, 200]
    assert "the cache cannot be reached" in caplog.text


def test_basic_authentication_is_not_accepted(make_user):
    make_user("basic")
    credentials = base64.b64encode(f"basic:{PASSWORD}".encode()).decode()
    response = APIClient().get("/api/dialogues/", HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert response.status_code in (401, 403)


def test_a_demonstration_system_prompt_has_a_length_limit(make_user):
    from annotation.models import Demonstration
    from annotation.text import MAX_MESSAGE_CHARS

    api = APIClient()
    api.force_authenticate(make_user("writer"))
    response = api.post("/api/demonstrations/",
                        {"prompt": "Q", "answer": "A", "system_prompt": "x" * (MAX_MESSAGE_CHARS + 1)},
                        format="json")
    assert response.status_code == 400 and "system_prompt" in response.json()
    assert not Demonstration.objects.exists()


def _schema(client) -> dict:
    return yaml.safe_load(client.get("/api/schema/").content)


# Names of rows looked up by slug: never stored as text, refused unless the row exists.
LOOKUPS = {"risk_category", "attack_vector", "base"}


def test_every_free_text_field_of_a_request_has_a_length_limit(client):
    schema = _schema(client)
    unbounded = []
    for name, component in schema["components"]["schemas"].items():
        if not name.endswith("Request"):
            continue
        for field, spec in component.get("properties", {}).items():
            if field in LOOKUPS and spec.get("minLength") == 1:
                continue
            if spec.get("type") == "string" and not spec.get("enum") and "format" not in spec \
                    and "maxLength" not in spec and not spec.get("readOnly"):
                unbounded.append(f"{name}.{field}")
    assert not unbounded


# Bounded lists of a fixed few items (a batch's export jobs, one per format) need no pages.
UNPAGED = {"/api/safety/red-team/models/", "/api/batches/{label}/exports/"}


def test_every_list_endpoint_answers_in_pages(client):
    schema = _schema(client)
    unpaged = []
    for path, operations in schema["paths"].items():
        get = operations.get("get")
        if not get or path in UNPAGED:
            continue
        for response in get["responses"].values():
            content = response.get("content", {}).get("application/json", {}).get("schema", {})
            if content.get("type") == "array":
                unpaged.append(path)
            ref = content.get("$ref", "")
            if ref.startswith("#/components/schemas/Paginated"):
                assert {"page", "page_size"} <= {p["name"] for p in get.get("parameters", [])}, path
    assert not unpaged


def test_drf_is_at_least_3_17_2():
    # Older releases let a JSON body bypass DATA_UPLOAD_MAX_MEMORY_SIZE.
    assert Version(version("djangorestframework")) >= Version("3.17.2")
    assert re.search(r'"djangorestframework>=3\.17\.2[,"]', (ROOT / "pyproject.toml").read_text())


def test_an_api_url_that_resolves_to_nothing_answers_json(client):
    response = client.get("/api/dialogues/-3/")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}
    assert client.get("/annotate/nowhere/").status_code == 404


def test_a_body_over_the_upload_limit_is_a_json_400_under_the_api(client, make_user, settings):
    # drf>=3.17.2 applies DATA_UPLOAD_MAX_MEMORY_SIZE to JSON bodies too.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client.force_login(make_user("big"))
    response = client.post("/api/dialogues/", {"focus": "helpfulness", "system_prompt": "x" * 5000},
                           content_type="application/json")
    assert response.status_code == 400
    from annotation.models import Dialogue

    assert not Dialogue.objects.exists()


# PostgreSQL's text cannot hold a NUL: a filter that passed `variant=\x00` on answered 500 there
# (and 200 on SQLite). Every page and endpoint refuses one in the query string, with a reason.
def test_a_nul_character_in_a_query_string_is_refused_400_everywhere(make_user):
    researcher = make_user("res", role="researcher")
    page = Client()
    page.force_login(researcher)
    assert page.get("/safety/red-team/results/", {"variant": "cool", "vendor": ""}).status_code == 200
    for query in ({"variant": "\x00"}, {"vendor": "a\x00b"}, {"\x00": "1"}):
        assert page.get("/safety/red-team/results/", query).status_code == 400, query
    api = APIClient()
    api.force_authenticate(researcher)
    answer = api.get("/api/safety/red-team/results/", {"variant": "\x00"})
    assert answer.status_code == 400 and answer.json() == {"detail": "A query parameter contains a NUL character."}
    assert api.get("/api/safety/red-team/results/", {"vendor": "x"}).status_code == 200
