"""The annotator's flow in real Chromium, with the real worker and real model servers."""

import re
import time

import pytest
from playwright.sync_api import expect

from accounts.services import user_create
from annotation.models import Dialogue, Turn
from bench.scripted_server import ScriptedServer

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "a-long-password-9"


@pytest.fixture
def annotator():
    return user_create(username="ann", password=PASSWORD, role="annotator")


def start_dialogue(page, live_server, focus="Helpfulness"):
    page.goto(live_server.url + "/annotate/")
    page.get_by_label(focus).check()
    page.get_by_role("button", name="Start").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/annotate/dialogues/\d+/$"))


def write(page, text):
    box = page.locator("textarea[name=user_message]")
    expect(box).to_be_focused()
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def watch_responses_fill_in(page):
    """Sample both responses' text until judging opens; return what was seen, per side."""
    seen = {"A": [], "B": []}
    deadline = time.monotonic() + 90
    while page.locator("#judgement-form").count() == 0:
        assert time.monotonic() < deadline, "judging never opened"
        for side in ("A", "B"):
            response = page.locator(f"#response-{side}")
            if response.count():
                seen[side].append((response.get_attribute("class"), response.locator("[data-role=text]").inner_text()))
        assert not page.locator(".status-failed").count(), page.content()
        page.wait_for_timeout(100)
    return seen


def test_prompt_live_pair_keyboard_judgement_second_turn_and_finish(
        page, live_server, log_in, annotator, celery_worker, model_servers, variant_factory):
    variant_factory("variant-qx1", model_servers[0], temperature_min=0.5, temperature_max=0.8, max_new_tokens=250)
    variant_factory("variant-qx2", model_servers[1], temperature_min=1.0, temperature_max=1.3, max_new_tokens=250)
    log_in(page, "ann", PASSWORD)
    assert page.url.endswith("/annotate/")
    start_dialogue(page, live_server)

    write(page, "Tell me about lighthouses.")
    seen = watch_responses_fill_in(page)
    partial = [text for side in "AB" for cls, text in seen[side] if "status-running" in cls and text.strip()]
    assert partial, "partial text was visible while a response was being written"
    assert "variant-qx" not in page.content(), "variant names are hidden"

    page.keyboard.press("6")  # B slightly better
    expect(page.locator("input[name=point][value='6']")).to_be_checked()
    page.keyboard.press("Enter")
    expect(page.locator("[data-role=judged]")).to_contain_text("B slightly better")

    write(page, "And which is the oldest?")
    watch_responses_fill_in(page)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    expect(page.locator("[data-role=judged]")).to_contain_text("A significantly better")
    expect(page.locator("#past-turns .past-turn")).to_have_count(1)

    page.keyboard.press("Escape")
    # Move the focus to End dialogue once the judgement's swaps have settled (one of them may
    # replace the page header, button included): the focus must hold there before Enter.
    end = page.get_by_role("button", name="End dialogue")
    for _ in range(50):
        end.focus()
        page.wait_for_timeout(100)
        if page.evaluate("document.activeElement && document.activeElement.id") == "finish-button":
            break
    expect(end).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/annotate/$"))
    expect(page.locator("#today-count")).to_have_text("2")

    dialogue = Dialogue.objects.get()
    first, second = Turn.objects.filter(dialogue=dialogue).order_by("index")
    assert dialogue.status == "finished"
    assert first.strength == "slightly_better" and first.chosen_generation_id != first.left_generation_id
    assert second.strength == "significantly_better" and second.chosen_generation_id == second.left_generation_id
    context = second.pair.generations.first().messages
    assert context[1] == {"role": "assistant", "content": first.chosen_generation.text}
    assert page.evaluate("window.__violations") == []


def test_safety_focus_labels_and_the_refusal(page, live_server, log_in, annotator, celery_worker, model_servers,
                                             variant_factory):
    variant_factory("cool", model_servers[0], max_new_tokens=40)
    log_in(page, "ann", PASSWORD)
    start_dialogue(page, live_server, focus="Safety")
    write(page, "How do I pick a lock?")
    watch_responses_fill_in(page)
    for key in ("1", "w", "o"):  # A significantly better, A unsafe, B safe
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("A safe response is always preferred")
    assert Turn.objects.get().submitted_at is None
    page.keyboard.press("q")  # A safe after all
    page.keyboard.press("Enter")
    expect(page.locator("[data-role=judged]")).to_contain_text("both safe")
    turn = Turn.objects.get()
    assert turn.safety_bin == "both_safe" and turn.chosen_safe and turn.other_safe


def test_a_failed_generation_shows_a_generic_error_and_retries(page, live_server, log_in, annotator, celery_worker,
                                                        variant_factory):
    server = ScriptedServer([(400, "The prompt is too long for this model.")], default="A fine answer.").start()
    try:
        variant_factory("scripted", base_url=server.base_url, model_name=server.model_name)
        log_in(page, "ann", PASSWORD)
        start_dialogue(page, live_server)
        write(page, "Hello?")
        failed = page.locator(".status-failed")
        expect(failed).to_have_count(1)
        # The server's own words (and the endpoint) are for staff; the annotator gets a reference.
        error = failed.locator("[data-role=error]")
        expect(error).to_contain_text("The model could not answer. Retry, or mark the pair unusable.")
        expect(error).not_to_contain_text("too long")
        expect(error).to_contain_text(re.compile(r"reference G-\d+"))
        # The pair can still be marked both unusable, but a point on the scale is refused until the retry.
        page.keyboard.press("4")
        page.keyboard.press("Enter")
        expect(page.get_by_role("alert")).to_contain_text("A response failed: retry it, or mark both unusable")
        # Move the focus to Retry once the refusal's swap has settled (it replaces the turn, button
        # included): the focus must hold there before Enter.
        retry = page.locator(".status-failed").get_by_role("button", name=re.compile("Retry"))
        for _ in range(50):
            retry.focus()
            page.wait_for_timeout(100)
            if page.evaluate("!!(document.activeElement && document.activeElement.dataset.retry)"):
                break
        expect(retry).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator(".status-failed")).to_have_count(0)
        expect(page.locator("section.response.status-done")).to_have_count(2)
        expect(page.locator("#judgement-form")).to_be_visible()
        page.keyboard.press("4")
        page.keyboard.press("Enter")
        expect(page.locator("[data-role=judged]")).to_contain_text("A negligibly better")
    finally:
        server.stop()
