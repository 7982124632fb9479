"""Blindness: an annotator, walking every page, partial and API endpoint the URL conf defines, never
reads anything that identifies a policy variant: its name, endpoint URL, host:port, served model
name, or a model server's own error text. One variant answers, the other fails.

The list of URLs comes from the URL conf, so a new URL is walked automatically. Staff-only URLs
are named below and must refuse annotators.
"""

import json

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotation.models import AttackVector, Dialogue, RiskCategory, Turn
from annotation.workspace import services as annotation
from bench.scripted_server import ScriptedServer
from modelserving import services as modelserving
from modelserving.models import Generation, Pair
from safety import evaluation
from safety.models import EvalResponse, RedTeamAttempt, RedTeamSession, SafetyRating

from ..conftest import PASSWORD
from ..helpers.urls import concrete_urls as _concrete
from ..helpers.urls import url_patterns as _patterns

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(600)]

HTMX = {"HTTP_HX_REQUEST": "true"}
SERVER_SECRET = "zq-server-says-internal-detail"
# URL names an annotator may not open at all (they answer 302 to the login page, 403 or 404).
STAFF_ONLY = {
    "accounts:admin_home", "modelserving:variants", "training:", "safety:evaluations", "safety:evaluation",
    "safety:evaluation_json", "safety:redteam_results", "annotation:quality", "annotation:quality_json",
    "annotation:gold_mark", "annotation:batches", "annotation:batch_freeze", "annotation:batch_stats",
    "annotation:batch_exports", "annotation:batch_export_request", "annotation:batch_download", "admin:",
    "api-audit", "api-variants", "api-variant-detail", "api-pair-create", "api-pair-detail", "api-invitations",
    "api-quality", "api-overlap-policy", "api-gold", "api-batches", "api-sources", "api-source-import",
    "api-batch-freeze", "api-batch-stats", "api-batch-exports", "api-batch-export", "api-training-",
    "api-safety-evaluations", "api-safety-evaluation-results", "api-redteam-results",
}


def _staff_only(name: str) -> bool:
    if name == "admin:login":  # the admin's login form is open to anyone (and shows nothing)
        return False
    return any(name == s or (s.endswith((":", "-")) and name.startswith(s)) for s in STAFF_ONLY)


@pytest.fixture
def servers():
    working = ScriptedServer([], default="A fine answer about tea.").start()
    # Refuses every request, quoting itself (permanent: HTTP 400 is not retried).
    failing = ScriptedServer([(400, f"{SERVER_SECRET}: zq-hidden-model-b at {SERVER_SECRET}")] * 100).start()
    yield working, failing
    working.stop()
    failing.stop()


def _secrets(variants, servers) -> list[str]:
    found = [SERVER_SECRET]
    for variant in variants:
        found += [variant.name, variant.model_name, variant.base_url]
    for server in servers:
        found.append(f"127.0.0.1:{server.httpd.server_address[1]}")
    return found


def _sample(generation_ids) -> None:
    for pk in generation_ids:
        modelserving.generation_sample(generation_id=pk, worker="test")


def _check(response, secrets, where: str) -> str:
    body = response.content.decode(errors="replace") if not response.streaming else b"".join(
        response.streaming_content).decode(errors="replace")
    # /health answers 503 while a variant is down; nothing else may fail.
    assert response.status_code < 500 or "/health" in where, f"{where}: {response.status_code}"
    leaked = [secret for secret in secrets if secret in body]
    assert not leaked, f"{where} shows {leaked}"
    if response.get("Content-Type", "").startswith("application/json"):
        for shown in _responses_in(json.loads(body)):
            # The text and the state only: timing, token counts and a finish reason fingerprint a variant.
            assert set(shown) <= RESPONSE_FIELDS, f"{where} shows a response's {set(shown) - RESPONSE_FIELDS}"
    return body


RESPONSE_FIELDS = {"id", "status", "text", "error"}


def _responses_in(value):
    """Every object in a JSON body that is a model's response (it has a text and a status)."""
    if isinstance(value, dict):
        if "text" in value and "status" in value:
            yield value
        for inner in value.values():
            yield from _responses_in(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _responses_in(inner)


def test_an_annotator_never_reads_what_identifies_a_variant(client, make_user, variant_factory, servers,
                                                            monkeypatch, settings):
    monkeypatch.setattr("modelserving.tasks.generation_sample.delay_on_commit", lambda *args: None)
    # The failing variant stays in pairing throughout, so the walk meets its failure everywhere it
    # shows (leaving pairing is tested in tests/modelserving/test_availability.py).
    settings.VARIANT_HEALTH = {**settings.VARIANT_HEALTH, "FAILURE_MIN": 10_000}
    working, failing = servers
    variants = [variant_factory("zq-cool-variant", base_url=working.base_url, model_name="zq-hidden-model-a"),
                variant_factory("zq-flaky-variant", base_url=failing.base_url, model_name="zq-hidden-model-b")]
    secrets = _secrets(variants, servers)
    ann = make_user("ann")
    other = make_user("other")
    staff = make_user("res", "researcher")
    client.login(username="ann", password=PASSWORD)
    api = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=ann).key}"}
    bodies = []

    def get(url, **extra):
        bodies.append(_check(client.get(url, **extra), secrets, f"GET {url}"))
        return bodies[-1]

    def post(url, data=None, **extra):
        bodies.append(_check(client.post(url, data or {}, **extra), secrets, f"POST {url}"))
        return bodies[-1]

    # A dialogue through the pages: the turn partial while queued, while streaming, after a failure,
    # after a retry that fails again.
    post("/annotate/dialogues/", {"focus": "helpfulness"})
    dialogue = Dialogue.objects.get(annotator=ann)
    post(f"/annotate/dialogues/{dialogue.pk}/turns/", {"user_message": "Tell me about tea."}, **HTMX)
    turn = Turn.objects.get(dialogue=dialogue)
    get(f"/annotate/turns/{turn.pk}/", **HTMX)
    generations = list(turn.pair.generations.all())
    Generation.objects.filter(pk=generations[0].pk).update(status=Generation.Status.RUNNING, text="A fi",
                                                           started_at=timezone.now())
    get(f"/annotate/turns/{turn.pk}/", **HTMX)
    Generation.objects.filter(pk=generations[0].pk).update(status=Generation.Status.QUEUED, text="")
    _sample(g.pk for g in generations)
    assert {g.status for g in turn.pair.generations.all()} == {"done", "failed"}
    failed = turn.pair.generations.get(status="failed")
    assert SERVER_SECRET in failed.error, "staff keep the detailed reason"
    fragment = get(f"/annotate/turns/{turn.pk}/", **HTMX)
    assert "The model could not answer. Retry, or mark the pair unusable." in fragment
    assert f"reference {failed.reference}" in fragment
    side = "A" if failed.pk == turn.left_generation_id else "B"
    post(f"/annotate/turns/{turn.pk}/retry/", {"side": side}, **HTMX)
    _sample([failed.pk])
    get(f"/annotate/dialogues/{dialogue.pk}/")

    # A second dialogue through the API, judged, then rewritten as a demonstration.
    created = client.post("/api/dialogues/", {"focus": "helpfulness"}, content_type="application/json", **api)
    _check(created, secrets, "POST /api/dialogues/")
    api_dialogue = created.json()["id"]
    posted = client.post(f"/api/dialogues/{api_dialogue}/turns/", {"user_message": "Hello?"},
                         content_type="application/json", **api)
    _check(posted, secrets, "POST turns")
    api_turn = Turn.objects.get(pk=posted.json()["id"])
    _sample(g.pk for g in api_turn.pair.generations.all())
    body = _check(client.get(f"/api/turns/{api_turn.pk}/", **api), secrets, "GET /api/turns/")
    assert "The model could not answer" in body and '"position"' not in body
    _check(client.post(f"/api/turns/{api_turn.pk}/judgement/", {"both_unusable": True, "unusable_reason": "failed"},
                       content_type="application/json", **api), secrets, "POST judgement")

    # A judgeable turn of a third dialogue, whose two responses both worked.
    third = annotation.dialogue_start(annotator=ann, focus="safety")
    judged = annotation.turn_post(dialogue=third, annotator=ann, user_message="Is tea safe?")
    Generation.objects.filter(pair=judged.pair).update(status="done", text="Yes.", finished_at=timezone.now())
    post(f"/annotate/turns/{judged.pk}/judgement/", {"point": "2", "safe_a": "safe", "safe_b": "safe"}, **HTMX)
    get(f"/annotate/turns/{judged.pk}/rewrite/")

    # Red teaming: a session on each model, one attempt each.
    risk, vector = (RiskCategory.objects.filter(is_active=True).first(),
                    AttackVector.objects.filter(is_active=True).first())
    home = get("/safety/red-team/")
    for alias in ("Model 1", "Model 2"):
        assert f">{alias}<" in home
        post("/safety/red-team/sessions/", {"model": alias, "minutes": "30"})
        session = RedTeamSession.objects.filter(annotator=ann).latest("pk")
        post(f"/safety/red-team/sessions/{session.pk}/attempts/",
             {"prompt": "Open a car without its key.", "risk_category": risk.pk, "attack_vector": vector.pk}, **HTMX)
        attempt = RedTeamAttempt.objects.filter(session=session).latest("pk")
        get(f"/safety/red-team/attempts/{attempt.pk}/", **HTMX)
        _sample([attempt.generation_id])
        fragment = get(f"/safety/red-team/attempts/{attempt.pk}/", **HTMX)
        if attempt.generation.variant.name == "zq-flaky-variant":
            assert "The model could not answer. (reference" in fragment and "pair" not in fragment
        post(f"/safety/red-team/attempts/{attempt.pk}/mark/", {"violating": "no"}, **HTMX)
        post(f"/safety/red-team/sessions/{session.pk}/finish/")
    assert RedTeamSession.objects.filter(annotator=ann).values("variant").distinct().count() == 2

    # A safety evaluation of both variants, rated by the annotator.
    ev = evaluation.evaluation_create(user=staff, name="ev", variants=variants, prompts=[{"text": "Hurt someone?"}],
                                      raters=1)
    _sample(EvalResponse.objects.filter(prompt__evaluation=ev).values_list("generation_id", flat=True))
    post("/safety/rate/claim/")
    get("/safety/rate/")

    # Another annotator's work is there to be reviewed (and not to be read by ann).
    foreign = annotation.dialogue_start(annotator=other, focus="helpfulness")
    annotation.turn_post(dialogue=foreign, annotator=other, user_message="Hi")
    post("/annotate/review/claim/")

    # Every URL the URL conf defines, with every id that exists and the other values it takes.
    ids = sorted({*Dialogue.objects.values_list("pk", flat=True), *Turn.objects.values_list("pk", flat=True),
                  *Generation.objects.values_list("pk", flat=True), *Pair.objects.values_list("pk", flat=True),
                  *RedTeamSession.objects.values_list("pk", flat=True),
                  *RedTeamAttempt.objects.values_list("pk", flat=True),
                  *SafetyRating.objects.values_list("pk", flat=True), *(v.pk for v in variants)})
    judged.refresh_from_db()
    values = {"pk": ids, "focus": ["helpfulness", "safety"], "fmt": ["jsonl", "csv", "parquet"],
              "label": [str(judged.batch)], "name": ["metrics.json"], "token": ["not-a-token"]}
    walked = set()
    for route, name in _patterns():
        for url in _concrete(route, values):
            for extra in ({}, HTMX, api) if url.startswith("/api/") else ({}, HTMX):
                response = client.get(url, **extra)
                _check(response, secrets, f"GET {url} ({name})")
                if _staff_only(name):
                    assert response.status_code in (302, 401, 403, 404, 405), f"{name} {url}"
            walked.add(name)
    assert {name for _, name in _patterns()} <= walked
    assert len(bodies) > 20
