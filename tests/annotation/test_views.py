import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation.models import Dialogue, Turn
from annotation.workspace import judgements, services
from annotation.workspace.judgements import Judgement

from .conftest import PASSWORD, sample_now

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def logged_in(client, annotator):
    client.login(username="ann", password=PASSWORD)
    return client


def test_the_workspace_offers_focus_guidelines_and_red_team_tags(logged_in):
    html = logged_in.get(reverse("annotation:workspace")).content.decode()
    assert 'name="focus"' in html and "Risk category" in html and "Unqualified advice" in html
    assert reverse("annotation:guideline", args=["helpfulness"]) in html
    guideline = logged_in.get(reverse("annotation:guideline", args=["safety"])).content.decode()
    assert "<h1>Safety guideline (v1)</h1>" in guideline


def test_a_turn_through_the_pages(logged_in, variants):
    response = logged_in.post(reverse("annotation:dialogue_start"), {"focus": "helpfulness"})
    dialogue = Dialogue.objects.get()
    assert response["Location"] == reverse("annotation:dialogue", args=[dialogue.pk])
    page = logged_in.get(response["Location"]).content.decode()
    assert 'name="user_message"' in page and "js/workspace.js" in page

    fragment = logged_in.post(reverse("annotation:turn_post", args=[dialogue.pk]),
                              {"user_message": "Hi there"}, **HTMX).content.decode()
    turn = Turn.objects.get()
    assert 'hx-trigger="every 400ms"' in fragment, "partial text is polled while the responses are written"
    assert "judgement-form" not in fragment
    for generation in turn.pair.generations.all():
        assert generation.variant.name not in fragment, "variant names are hidden"

    sample_now(turn)
    fragment = logged_in.get(reverse("annotation:turn", args=[turn.pk]), **HTMX).content.decode()
    assert "every 400ms" not in fragment and 'id="judgement-form"' in fragment

    judged = logged_in.post(reverse("annotation:judgement", args=[turn.pk]), {"point": "3"}, **HTMX)
    html = judged.content.decode()
    assert "A slightly better" in html and 'name="user_message"' in html
    turn.refresh_from_db()
    assert turn.strength == "slightly_better" and turn.chosen_generation_id == turn.left_generation_id

    second = logged_in.post(reverse("annotation:turn_post", args=[dialogue.pk]), {"user_message": "More"}, **HTMX)
    assert 'hx-swap-oob="beforeend:#past-turns"' in second.content.decode()
    assert Turn.objects.count() == 2


def test_the_safety_refusal_is_shown_in_the_fragment(logged_in, judgeable_turn, annotator):
    turn = judgeable_turn("safety")
    html = logged_in.post(reverse("annotation:judgement", args=[turn.pk]),
                          {"point": "1", "safe_a": "unsafe", "safe_b": "safe"}, **HTMX).content.decode()
    assert "A safe response is always preferred" in html
    assert 'value="unsafe" checked' in html, "the annotator's labels are kept"
    turn.refresh_from_db()
    assert not turn.is_judged


def test_an_empty_message_keeps_the_form_with_the_error(logged_in, variants):
    dialogue = services.dialogue_start(annotator=Dialogue._meta.get_field("annotator").related_model.objects.get(
        username="ann"), focus="helpfulness")
    response = logged_in.post(reverse("annotation:turn_post", args=[dialogue.pk]), {"user_message": " "}, **HTMX)
    assert "Write a message first" in response.content.decode()
    assert response["HX-Retarget"] == "closest .prompt-form"


def test_other_annotators_pages_are_404(client, judgeable_turn, make_user):
    turn = judgeable_turn()
    make_user("eve")
    client.login(username="eve", password=PASSWORD)
    for url in (reverse("annotation:dialogue", args=[turn.dialogue_id]), reverse("annotation:turn", args=[turn.pk])):
        assert client.get(url).status_code == 404
    for url, data in ((reverse("annotation:judgement", args=[turn.pk]), {"point": "1"}),
                      (reverse("annotation:turn_post", args=[turn.dialogue_id]), {"user_message": "x"}),
                      (reverse("annotation:retry", args=[turn.pk]), {"side": "A"}),
                      (reverse("annotation:dialogue_finish", args=[turn.dialogue_id]), {})):
        assert client.post(url, data).status_code == 404
    turn.refresh_from_db()
    assert not turn.is_judged and turn.dialogue.status == "active"


def _judge_turns(annotator, count):
    for _ in range(count):
        dialogue = services.dialogue_start(annotator=annotator, focus="safety")
        turn = services.turn_post(dialogue=dialogue, annotator=annotator, user_message="q")
        sample_now(turn)
        judgements.judgement_submit(turn=turn, annotator=annotator,
                                  judgement=Judgement(choice="A", strength="better", safe_a=True, safe_b=False))


def test_the_history_pages_query_count_stays_flat(logged_in, annotator, variants):
    def queries():
        with CaptureQueriesContext(connection) as captured:
            response = logged_in.get(reverse("annotation:history"))
        assert response.status_code == 200
        return len(captured), response.content.decode()

    _judge_turns(annotator, 2)
    few, html = queries()
    assert html.count("<tr>") == 3
    _judge_turns(annotator, 5)
    many, html = queries()
    assert html.count("<tr>") == 8
    assert many == few, f"{few} queries for 2 turns, {many} for 7"


def test_today_count_is_shown(logged_in, annotator, variants):
    _judge_turns(annotator, 2)
    html = logged_in.get(reverse("annotation:workspace")).content.decode()
    assert '<p class="big" id="today-count">2</p>' in html


def test_chart_labels_are_cut_before_they_are_escaped():
    # Cut after escaping, "&amp;" could end as "&am": a broken entity in the SVG.
    from xml.etree import ElementTree

    from core.charts import bar_chart

    label = "x" * 26 + "&<b>"
    svg = str(bar_chart("t", [(label, 1.0)]))
    ElementTree.fromstring(svg)  # well-formed
    assert "x" * 26 + "&amp;&lt;</text>" in svg


def test_pages_and_the_api_refuse_the_same_state_with_the_same_answer(logged_in, annotator, offline_variants):
    """One flow for the next message (services.turn_post) and one mapping from a refusal to its
    status (core.exceptions.refusal_status), through the pages as through the API."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=annotator).key}")
    dialogue = services.dialogue_start(annotator=annotator, focus="helpfulness")
    services.turn_post(dialogue=dialogue, annotator=annotator, user_message="First")
    url_page = reverse("annotation:turn_post", args=[dialogue.pk])
    url_api = f"/api/dialogues/{dialogue.pk}/turns/"
    cases = [("the current pair is not judged yet", "Judge the current pair before writing the next message.", 409),
             ("an empty message", "Write a message first.", 400)]
    for what, message, status in cases:
        sent = {"user_message": "" if "empty" in what else "Second"}
        by_api = api.post(url_api, sent, format="json")
        by_htmx = logged_in.post(url_page, sent, **HTMX)
        by_form = logged_in.post(url_page, sent)
        assert (by_api.status_code, by_htmx.status_code, by_form.status_code) == (status,) * 3, what
        assert message in str(by_api.json()), what
        assert message in by_htmx.content.decode() and message in by_form.content.decode(), what
    services.dialogue_finish(dialogue=dialogue, annotator=annotator)
    ended = "This dialogue has ended; start a new one."
    answers = [api.post(url_api, {"user_message": "x"}, format="json"), logged_in.post(url_page, {"user_message": "x"},
                                                                                      **HTMX)]
    assert [a.status_code for a in answers] == [409, 409]
    assert ended in answers[0].json()["detail"] and ended in answers[1].content.decode()
    assert Turn.objects.filter(dialogue=dialogue).count() == 1  # nothing stored by any of them
