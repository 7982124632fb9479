import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import Dialogue, Turn
from modelserving.models import Generation, Pair

from .conftest import PASSWORD, sample_now

pytestmark = pytest.mark.django_db


def token_client(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def owner_turn(judgeable_turn):
    return judgeable_turn()


def urls(turn):
    d, t = turn.dialogue_id, turn.pk
    return [
        ("get", f"/api/dialogues/{d}/", None),
        ("post", f"/api/dialogues/{d}/turns/", {"user_message": "hijack"}),
        ("post", f"/api/dialogues/{d}/finish/", None),
        ("get", f"/api/turns/{t}/", None),
        ("post", f"/api/turns/{t}/judgement/", {"point": 1}),
        ("post", f"/api/turns/{t}/retry/", {"side": "A"}),
    ]


def snapshot():
    return (list(Dialogue.objects.values()), list(Turn.objects.values()), Pair.objects.count(),
            list(Generation.objects.values("id", "status", "attempts")))


@pytest.mark.parametrize("role", ["annotator", "researcher", "admin"])
def test_someone_elses_ids_answer_404_as_unknown_ids_do_on_every_url_and_verb(owner_turn, make_user, role):
    intruder = token_client(make_user(f"other-{role}", role))
    before = snapshot()
    for method, url, body in urls(owner_turn):
        response = getattr(intruder, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
        assert response.json() == {"detail": "Not found."}, (method, url, response.content)
    assert snapshot() == before, "nothing changed"


def test_anonymous_callers_are_refused(owner_turn):
    anonymous = APIClient()
    for method, url, body in urls(owner_turn) + [("get", "/api/dialogues/", None), ("get", "/api/turns/next/", None)]:
        assert getattr(anonymous, method)(url, body, format="json").status_code in (401, 403), url


def test_a_researcher_or_admin_cannot_judge_as_someone_else(owner_turn, make_user):
    for role in ("researcher", "admin"):
        staff = token_client(make_user(f"boss-{role}", role))
        response = staff.post(f"/api/turns/{owner_turn.pk}/judgement/",
                              {"point": 2, "annotator": owner_turn.dialogue.annotator_id}, format="json")
        assert response.status_code == 404
        assert staff.post("/api/dialogues/", {"focus": "helpfulness"}, format="json").status_code == 403
    owner_turn.refresh_from_db()
    assert not owner_turn.is_judged


def test_lists_show_only_ones_own_dialogues(owner_turn, make_user):
    other = token_client(make_user("other"))
    assert other.get("/api/dialogues/").json() == {"count": 0, "next": None, "previous": None, "results": []}
    assert other.get("/api/turns/next/").status_code == 204


def test_the_whole_flow_through_the_api(annotator, variants):
    api = token_client(annotator)
    dialogue = api.post("/api/dialogues/", {"focus": "safety", "risk_category": "unqualified-advice",
                                            "attack_vector": "role-play-not-a-slug"}, format="json")
    assert dialogue.status_code == 400 and "attack_vector" in dialogue.json()
    dialogue = api.post("/api/dialogues/", {"focus": "safety", "risk_category": "unqualified-advice",
                                            "attack_vector": "perspective-manipulation"}, format="json").json()
    turn = api.post(f"/api/dialogues/{dialogue['id']}/turns/", {"user_message": "How do I pick a lock?"},
                    format="json")
    assert turn.status_code == 201
    turn = turn.json()
    assert set(turn["responses"]) == {"A", "B"} and "variant" not in turn["responses"]["A"]
    early = api.post(f"/api/turns/{turn['id']}/judgement/", {"point": 1, "safe_a": True, "safe_b": True},
                     format="json")
    assert early.status_code == 400 and "Wait until both" in str(early.json())
    sample_now(Turn.objects.get(pk=turn["id"]))
    assert api.get("/api/turns/next/").json()["id"] == turn["id"]

    refused = api.post(f"/api/turns/{turn['id']}/judgement/", {"point": 2, "safe_a": False, "safe_b": True},
                       format="json")
    assert refused.status_code == 400 and "A safe response is always preferred" in str(refused.json())
    judged = api.post(f"/api/turns/{turn['id']}/judgement/", {"point": 7, "safe_a": False, "safe_b": True},
                      format="json")
    assert judged.status_code == 201
    assert judged.json()["judgement"] | {"submitted_at": None, "time_spent_ms": None, "batch": None} == {
        "choice": "B", "strength": "better", "point": 7, "safe_a": False, "safe_b": True,
        "safety_bin": "chosen_safe_other_unsafe", "both_unusable": False, "unusable_reason": "",
        "time_spent_ms": None, "submitted_at": None, "batch": None}
    repeat = api.post(f"/api/turns/{turn['id']}/judgement/", {"choice": "B", "strength": "better",
                                                                "safe_a": False, "safe_b": True}, format="json")
    assert repeat.status_code == 200 and repeat.json()["judgement"] == judged.json()["judgement"]
    conflict = api.post(f"/api/turns/{turn['id']}/judgement/", {"point": 8, "safe_a": False, "safe_b": True},
                        format="json")
    assert conflict.status_code == 409 and "already judged" in conflict.json()["detail"]

    second = api.post(f"/api/dialogues/{dialogue['id']}/turns/", {"user_message": "Why not?"}, format="json")
    assert second.status_code == 201
    finished = api.post(f"/api/dialogues/{dialogue['id']}/finish/", format="json").json()
    assert finished["status"] == "finished" and len(finished["turns"]) == 2


def test_token_can_be_obtained_with_a_password(annotator):
    response = APIClient().post("/api/auth/token/", {"username": "ann", "password": PASSWORD}, format="json")
    assert response.status_code == 200 and response.json()["token"]


def test_the_openapi_schema_validates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    schema = (tmp_path / "schema.yml").read_text()
    assert "/api/turns/{id}/judgement/" in schema and "/api/dialogues/{id}/turns/" in schema



# An annotator (or a script with their token) opening dialogue after dialogue would keep every model
# server busy: a person's pairs, red-team responses and retries in flight are capped together.
@pytest.mark.django_db
def test_pairs_in_flight_are_capped_per_person(offline_variants, make_user, settings):
    from django.core.exceptions import ValidationError
    from django.utils import timezone

    from annotation.models import AttackVector, RiskCategory
    from annotation.workspace import services
    from safety import redteam

    settings.MAX_IN_FLIGHT_PER_USER = 3
    ann = make_user("capped")
    api = APIClient()
    api.force_authenticate(ann)

    def new_turn(message):
        dialogue = api.post("/api/dialogues/", {"focus": "helpfulness"}, format="json").json()
        return api.post(f"/api/dialogues/{dialogue['id']}/turns/", {"user_message": message}, format="json")

    first, second = (new_turn(f"Hi {index}").json() for index in range(2))
    session = redteam.session_start(annotator=ann, alias="Model 1", minutes=30)
    tags = {"risk_category": RiskCategory.objects.first(), "attack_vector": AttackVector.objects.first()}
    redteam.attempt_post(session=session, annotator=ann, prompt="Attack", **tags)  # the third in flight

    refused = new_turn("One more")
    assert refused.status_code == 429 and "at most 3 at a time" in refused.json()["detail"]
    with pytest.raises(ValidationError, match="at most 3"):
        redteam.attempt_post(session=session, annotator=ann, prompt="Again", **tags)
    # Someone else is not held back.
    other = make_user("free")
    services.turn_post(dialogue=services.dialogue_start(annotator=other, focus="helpfulness"), annotator=other,
                       user_message="Hi")

    # A pair whose responses failed is out of flight; its retry puts it back in, and is counted.
    failed = Turn.objects.get(pk=first["id"])
    Generation.objects.filter(pair=failed.pair).update(status="failed", finished_at=timezone.now())
    assert new_turn("Now").status_code == 201
    assert api.post(f"/api/turns/{failed.pk}/retry/", {"side": "A"}, format="json").status_code == 429
    assert Generation.objects.filter(pair=failed.pair, status="failed").count() == 2
    assert second
