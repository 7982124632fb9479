"""API tokens expire after API_TOKEN_MAX_AGE_HOURS, and a new password or a deactivation revokes
them at once; the API's schema needs a login under production settings."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from ..conftest import PASSWORD
from ..helpers.production import PRODUCTION_ENV, run_under_production

pytestmark = pytest.mark.django_db


def _get(token_key: str, url: str = "/api/dialogues/"):
    return APIClient().get(url, HTTP_AUTHORIZATION=f"Token {token_key}")


def _login(username: str) -> str:
    answer = APIClient().post("/api/auth/token/", {"username": username, "password": PASSWORD}, format="json")
    assert answer.status_code == 200, answer.content
    return answer.json()["token"]


def test_a_token_past_its_lifetime_is_refused_and_a_login_gives_a_new_one(make_user, settings):
    settings.API_TOKEN_MAX_AGE_HOURS = 24
    make_user("ann")
    key = _login("ann")
    assert _get(key).status_code == 200
    assert _login("ann") == key  # still young: the same token
    Token.objects.filter(key=key).update(created=timezone.now() - timedelta(hours=25))
    refused = _get(key)
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]
    fresh = _login("ann")
    assert fresh != key and _get(fresh).status_code == 200
    assert not Token.objects.filter(key=key).exists()


def test_a_new_password_revokes_the_users_tokens(make_user):
    user = make_user("ann")
    other = make_user("bob")
    key, kept = _login("ann"), _login("bob")
    user.set_password("another-long-password-7")
    user.save()
    assert _get(key).status_code == 401 and not Token.objects.filter(user=user).exists()
    assert _get(kept).status_code == 200 and Token.objects.filter(user=other).exists()
    # Saving the user without a new password keeps a new token.
    new = APIClient().post("/api/auth/token/", {"username": "ann", "password": "another-long-password-7"},
                           format="json").json()["token"]
    user.first_name = "Ann"
    user.save()
    assert _get(new).status_code == 200


def test_a_deactivation_revokes_the_users_tokens(make_user):
    user = make_user("ann")
    key = _login("ann")
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert not Token.objects.filter(user=user).exists() and _get(key).status_code == 401


def test_the_schema_needs_a_login_unless_it_is_public(make_user, settings):
    assert APIClient().get("/api/schema/").status_code == 200  # the embedded default and the tests
    make_user("ann")
    key = _login("ann")
    settings.API_SCHEMA_PUBLIC = False
    assert APIClient().get("/api/schema/").status_code == 401
    assert APIClient().get("/api/docs/").status_code == 401
    assert _get(key, "/api/schema/").status_code == 200


def test_production_serves_the_schema_to_logged_in_people_only():
    code = "import django; django.setup(); from django.conf import settings as s; print(s.API_SCHEMA_PUBLIC)"
    result = run_under_production(["-c", code], **PRODUCTION_ENV)
    assert result.stdout.strip() == "False", result.stderr[-500:]
