"""Invitations over HTTP: an admin invites, the invitee accepts; the same rules as the pages."""

import pytest
from django.contrib.auth import get_user_model

from accounts.roles import has_role
from accounts.services import user_create

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-password-9"


def as_user(client, username, role):
    user_create(username=username, password=PASSWORD, role=role)
    client.login(username=username, password=PASSWORD)
    return client


def test_an_admin_invites_and_the_invitee_accepts_once(client):
    as_user(client, "adm", "admin")
    made = client.post("/api/invitations/", {"role": "annotator"}, content_type="application/json")
    assert made.status_code == 201
    token = made.json()["token"]
    assert made.json()["url"].endswith(f"/invite/{token}/") and made.json()["role"] == "annotator"
    client.logout()
    accepted = client.post("/api/invitations/accept/", {"token": token, "username": "newbie", "password": PASSWORD},
                           content_type="application/json")
    assert accepted.status_code == 201 and accepted.json() == {"username": "newbie", "role": "annotator"}
    assert has_role(get_user_model().objects.get(username="newbie"), "annotator")
    again = client.post("/api/invitations/accept/", {"token": token, "username": "other", "password": PASSWORD},
                        content_type="application/json")
    assert again.status_code == 400 and "already been used" in again.content.decode()
    assert not get_user_model().objects.filter(username="other").exists()


def test_only_admins_invite_and_a_bad_acceptance_creates_nobody(client):
    as_user(client, "res", "researcher")
    assert client.post("/api/invitations/", {"role": "admin"}, content_type="application/json").status_code == 403
    client.logout()
    as_user(client, "adm", "admin")
    token = client.post("/api/invitations/", {"role": "annotator"}, content_type="application/json").json()["token"]
    assert client.post("/api/invitations/", {"role": "superuser"},
                       content_type="application/json").status_code == 400
    client.logout()
    weak = client.post("/api/invitations/accept/", {"token": token, "username": "newbie", "password": "123"},
                       content_type="application/json")
    assert weak.status_code == 400 and "password" in weak.content.decode().lower()
    taken = client.post("/api/invitations/accept/", {"token": token, "username": "adm", "password": PASSWORD},
                        content_type="application/json")
    assert taken.status_code == 400 and "taken" in taken.content.decode()
    unknown = client.post("/api/invitations/accept/", {"token": "nope", "username": "x", "password": PASSWORD},
                          content_type="application/json")
    assert unknown.status_code == 400 and "not valid" in unknown.content.decode()
    assert not get_user_model().objects.filter(username="newbie").exists()
