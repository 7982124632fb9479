"""Every request's user comes with their roles in one hand-written statement (accounts/roles.py),
by the session's user id or by an API token: the same answers as the ORM gave, on SQLite and
PostgreSQL alike."""

import pytest
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts import services
from accounts.backends import PasswordBackend
from accounts.roles import ADMIN, ANNOTATOR, RESEARCHER, roles_of, user_with_roles

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery-7"


def api_for(user):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return api


def test_the_user_comes_with_exactly_their_roles():
    researcher = services.user_create(username="r", password=PASSWORD, role=RESEARCHER)
    Group.objects.get(name=ANNOTATOR).user_set.add(researcher)
    Group.objects.create(name="not-a-role").user_set.add(researcher)
    token = Token.objects.create(user=researcher)

    for found in (user_with_roles(user_id=researcher.pk), user_with_roles(token_key=token.key)):
        assert found.pk == researcher.pk and found.username == "r" and found.check_password(PASSWORD)
        assert roles_of(found) == {RESEARCHER, ANNOTATOR}
    assert user_with_roles(user_id=researcher.pk + 1000) is None
    assert user_with_roles(token_key="0" * 40) is None


def test_a_superuser_holds_the_admin_role_without_its_group(django_user_model):
    root = django_user_model.objects.create_superuser("root", "root@example.org", PASSWORD)
    assert roles_of(user_with_roles(user_id=root.pk)) == {ADMIN}


def test_the_session_backend_refuses_unknown_malformed_and_inactive_users():
    annotator = services.user_create(username="a", password=PASSWORD, role=ANNOTATOR)
    backend = PasswordBackend()
    assert backend.get_user(str(annotator.pk)).pk == annotator.pk  # the session keeps the id as text
    assert backend.get_user("not-a-number") is None
    assert backend.get_user(annotator.pk + 1000) is None
    assert backend.get_user(str(2 ** 80)) is None  # beyond the database's integers: no one
    annotator.is_active = False
    annotator.save()
    assert backend.get_user(annotator.pk) is None


def test_tokens_authenticate_the_api_and_refuse_unknown_and_inactive_users():
    annotator = services.user_create(username="a", password=PASSWORD, role=ANNOTATOR)
    api = api_for(annotator)
    assert api.get("/api/turns/next/").status_code == 204
    annotator.is_active = False
    annotator.save()  # revokes the token (tests/accounts/test_tokens.py)
    refused = api.get("/api/turns/next/")
    assert refused.status_code == 401 and refused.json()["detail"] == "Invalid token."
    # Deactivated around the model (an UPDATE that fires no signal), a token left behind is refused too.
    active = services.user_create(username="b", password=PASSWORD, role=ANNOTATOR)
    api = api_for(active)
    type(active).objects.filter(pk=active.pk).update(is_active=False)
    refused = api.get("/api/turns/next/")
    assert refused.status_code == 401 and refused.json()["detail"] == "User inactive or deleted."
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    refused = stranger.get("/api/turns/next/")
    assert refused.status_code == 401 and refused.json()["detail"] == "Invalid token."


def test_the_request_token_is_the_stored_one(rf):
    from accounts.backends import TokenAuthentication

    annotator = services.user_create(username="a", password=PASSWORD, role=ANNOTATOR)
    stored = Token.objects.create(user=annotator)
    user, token = TokenAuthentication().authenticate_credentials(stored.key)
    assert token.pk == stored.key and token.user is user and not token._state.adding
    assert token.created == stored.created  # deferred, read when asked for
