"""Logins are limited per client address, whatever the usernames: the login page, the admin's login
and the token endpoint share one counter (THROTTLE_LOGIN), and a POST over it is answered 429
before any password hash is computed (each Argon2 hash costs about 440 ms and 100 MiB)."""

import pytest
from django.contrib.auth.hashers import Argon2PasswordHasher
from django.core.cache import cache
from rest_framework.test import APIClient

from core.throttles import LoginThrottle

pytestmark = pytest.mark.django_db
LIMIT = 20


@pytest.fixture(autouse=True)
def _limit(monkeypatch):
    cache.clear()
    monkeypatch.setattr(LoginThrottle, "THROTTLE_RATES", {**LoginThrottle.THROTTLE_RATES, "login": f"{LIMIT}/min"})
    yield
    cache.clear()


@pytest.fixture
def hashes(monkeypatch):
    """How many Argon2 hashes were computed (a password checked, or the dummy hash of an unknown user)."""
    counted = []
    encode, verify = Argon2PasswordHasher.encode, Argon2PasswordHasher.verify
    monkeypatch.setattr(Argon2PasswordHasher, "encode", lambda *a, **k: counted.append("encode") or encode(*a, **k))
    monkeypatch.setattr(Argon2PasswordHasher, "verify", lambda *a, **k: counted.append("verify") or verify(*a, **k))
    return counted


def test_forty_usernames_from_one_address_meet_the_limit_before_any_hash(client, make_user, hashes):
    make_user("real")
    hashes.clear()
    answers = [client.post("/login/", {"username": f"user{i}", "password": "wrong-password-1"},
                           REMOTE_ADDR="10.9.9.9").status_code for i in range(40)]
    assert answers[:LIMIT] == [200] * LIMIT and answers[LIMIT:] == [429] * (40 - LIMIT)
    assert len(hashes) == LIMIT  # one hash per login let through, none for the refused
    refused = client.post("/login/", {"username": "real", "password": "x"}, REMOTE_ADDR="10.9.9.9")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "Too many logins were tried from your address" in refused.content.decode()
    # Another address is not affected.
    assert client.post("/login/", {"username": "user1", "password": "x"}, REMOTE_ADDR="10.9.9.10").status_code == 200


def test_the_three_doors_share_one_counter(client, hashes):
    api = APIClient()
    for i in range(LIMIT // 2):
        client.post("/login/", {"username": f"a{i}", "password": "x"}, REMOTE_ADDR="10.7.7.7")
        client.post("/admin/login/", {"username": f"b{i}", "password": "x"}, REMOTE_ADDR="10.7.7.7")
    before = len(hashes)
    assert client.post("/admin/login/", {"username": "c", "password": "x"}, REMOTE_ADDR="10.7.7.7").status_code == 429
    token = api.post("/api/auth/token/", {"username": "d", "password": "x"}, format="json", REMOTE_ADDR="10.7.7.7")
    assert token.status_code == 429
    assert len(hashes) == before
    # Reading the login page is not a login.
    assert client.get("/login/", REMOTE_ADDR="10.7.7.7").status_code == 200
