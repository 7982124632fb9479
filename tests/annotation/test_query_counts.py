"""The judgement path's SQL queries, pinned: each request of an annotator at work reads and writes
only what it must (the user and roles in the authentication's query, the week's batch in one locked
read, the answer serialized from the rows the service locked). A new query on this path fails here;
bench/annotate_load.py prints the same counts on PostgreSQL."""

import random

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.helpers.preferences import answered_turn

# BEGIN/COMMIT (or a test's SAVEPOINT/RELEASE) count as two of them.
NEXT_TURN, SUBMIT, TURN_PARTIAL, FORM_POST = 2, 9, 3, 11


@pytest.fixture
def at_work(annotator, offline_variants, client):
    """Four answered turns; one already judged through the API (the week's batch exists)."""
    rng = random.Random(0)
    turns = [answered_turn(annotator, focus="helpfulness", rng=rng)[0] for _ in range(4)]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=annotator).key}")
    assert api.post(f"/api/turns/{turns[3].pk}/judgement/", {"point": 2}, format="json").status_code == 201
    client.force_login(annotator)
    return api, client, turns


@pytest.mark.django_db
def test_the_api_judgement_path(at_work, django_assert_max_num_queries):
    api, _, turns = at_work
    with django_assert_max_num_queries(NEXT_TURN):
        assert api.get("/api/turns/next/").json()["id"] == turns[0].pk
    with django_assert_max_num_queries(SUBMIT):
        answer = api.post(f"/api/turns/{turns[0].pk}/judgement/", {"point": 7, "time_spent_ms": 4000}, format="json")
    assert answer.status_code == 201
    judged = answer.json()
    assert judged["judgement"]["point"] == 7 and judged["judgement"]["batch"]
    assert set(judged["responses"]) == {"A", "B"}
    # A retry answers the stored judgement, no more dearly.
    with django_assert_max_num_queries(SUBMIT):
        again = api.post(f"/api/turns/{turns[0].pk}/judgement/", {"point": 7, "time_spent_ms": 4000}, format="json")
    assert again.status_code == 200 and again.json() == judged


@pytest.mark.django_db
def test_the_workspace_judgement_path(at_work, django_assert_max_num_queries):
    _, browser, turns = at_work
    with django_assert_max_num_queries(TURN_PARTIAL):
        assert browser.get(f"/annotate/turns/{turns[1].pk}/", HTTP_HX_REQUEST="true").status_code == 200
    with django_assert_max_num_queries(FORM_POST):
        answer = browser.post(f"/annotate/turns/{turns[1].pk}/judgement/", {"point": "3"}, HTTP_HX_REQUEST="true")
    assert answer.status_code == 200
    turns[1].refresh_from_db()
    assert turns[1].is_judged


@pytest.mark.django_db
def test_roles_come_with_the_user_and_follow_a_change(at_work, annotator):
    """The roles read in the authentication's query are the current ones: taking the annotator role
    away closes the next request's door."""
    from django.contrib.auth.models import Group

    api, browser, _ = at_work
    Group.objects.get(name="annotator").user_set.remove(annotator)
    assert api.get("/api/turns/next/").status_code == 403
    assert browser.get("/annotate/", HTTP_HX_REQUEST="true").status_code in (302, 403)
