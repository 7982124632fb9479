"""No page answers 5xx, whatever a visitor puts in its URL: every HTML URL the URL conf defines
(the admin's too), opened as each role and anonymously, with ids that exist, ids beyond the
database's integers, and hostile query values (impossible dates, huge and negative numbers, long
strings, unknown choices) in every query parameter a page reads. The API has the same proof from
the schema check (schemathesis, .ci/api_schema.sh)."""

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from annotation.workspace import services as annotation

from ..conftest import PASSWORD
from ..helpers.urls import concrete_urls, url_patterns

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(900)]

# Every query parameter a page reads (request.GET in the views), and the admin's own.
PARAMETERS = ("format", "vendor", "batch", "resamples", "focus", "kind", "a", "b", "since", "variant", "page",
              "q", "o", "p", "e", "_changelist_filters", "next")
HOSTILE = ("2026-02-30", "99999999999999999999999", "-1", "0", "x" * 3000, "no-such-choice", "1e309", "NaN",
           "\x00", "../../etc/passwd", "[]", "2026-13-45T25:61")
HUGE_ID = 99999999999999999999999


@pytest.fixture
def site(make_user, offline_variants):
    """A little of everything, so pages have rows to show."""
    people = {role: make_user(f"walk-{role}", role) for role in ("annotator", "admin", "researcher")}
    dialogue = annotation.dialogue_start(annotator=people["annotator"], focus="helpfulness")
    annotation.turn_post(dialogue=dialogue, annotator=people["annotator"], user_message="Hello")
    Token.objects.create(user=people["annotator"])
    return people


def _clients(people) -> dict[str, Client]:
    clients = {"anonymous": Client(raise_request_exception=False)}
    for role, user in people.items():
        clients[role] = Client(raise_request_exception=False)
        clients[role].login(username=user.username, password=PASSWORD)
    return clients


def test_no_html_page_answers_5xx_to_any_role_with_hostile_values(site):
    values = {"pk": [1, HUGE_ID], "focus": ["helpfulness", "no-such-focus"], "label": ["2026-W01", "x" * 300],
              "fmt": ["csv", "nope"], "name": ["metrics.jsonl", "..%2F..%2Fetc%2Fpasswd"], "token": ["not-a-token"],
              "object_id": [1, HUGE_ID, "-1"], "app_label": ["annotation"], "content_type_id": [1],
              "user_id": [1, HUGE_ID]}
    urls = sorted({url for route, _ in url_patterns() for url in concrete_urls(route, values)
                   if not url.startswith("/api/") and not url.startswith("/static/")})
    assert len(urls) > 60  # the walk found the site
    failures = []
    for role, client in _clients(site).items():
        for url in urls:
            queries = [""] + ["?" + "&".join(f"{name}={value}" for name in PARAMETERS) for value in HOSTILE]
            for query in queries:
                response = client.get(url + query)
                # /health's 503 is its answer (these variants are offline), not a failure.
                if response.status_code >= 500 and not url.startswith("/health"):
                    failures.append(f"{role} GET {url}{query[:80]} → {response.status_code}")
    assert failures == [], "\n".join(failures[:50])
