"""A researcher launches a reward-model run in real Chromium, watches it train through the real
worker, and reads the finished model's evaluation."""

import re
import time

import pytest
from playwright.sync_api import expect

from training.models import Checkpoint, TrainingRun

from ..training.conftest import PASSWORD, preference_batch, researcher, tiny_base  # noqa: F401 — fixtures

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]


def test_launch_watch_and_read_a_reward_model(page, live_server, log_in, celery_worker, preference_batch,  # noqa: F811
                                              researcher, tiny_base):  # noqa: F811
    batch = preference_batch(helpfulness=56, safety=16)
    log_in(page, "res", PASSWORD)
    expect(page.get_by_role("heading", name="Train a reward model")).to_be_visible()

    page.get_by_label(f"{batch} (").check()
    page.get_by_label("Base").select_option(label="tiny-llama")
    for label, value in (("Learning rate", "0.003"), ("Epochs", "3"), ("Max length", "128"), ("Batch size", "8"),
                         ("Per device batch size", "8")):
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_label("Name").fill("from the browser")
    page.get_by_role("button", name="Launch").click()

    page.wait_for_url(re.compile(r"/training/runs/\d+/$"))
    run = TrainingRun.objects.get()
    assert run.launched_by.username == "res" and run.config["learning_rate"] == 0.003
    # Watch: the page refreshes itself; curves appear while the job still runs.
    deadline = time.monotonic() + 240
    while not (page.locator("#run-status").text_content().strip() == "running"
               and page.locator("#run-live polyline").count() == 4):
        assert time.monotonic() < deadline, "no curves drawn while the run was running"
        page.wait_for_timeout(100)
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=300_000)
    expect(page.locator("#log-tail")).to_contain_text("training.jobs.reward")
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)

    page.locator("#checkpoint-link").click()
    checkpoint = Checkpoint.objects.get(run=run)
    expect(page.get_by_role("heading", name=checkpoint.name)).to_be_visible()
    table = page.locator("table.accuracy")
    expect(table.locator("th", has_text="helpfulness")).to_be_visible()
    overall = checkpoint.evaluation["accuracy"]["overall"]
    expect(table.locator("tr", has_text="all held-out pairs")).to_contain_text(f"{overall:.1f}")
    expect(page.locator("figure.chart svg rect").first).to_be_attached()
    assert overall >= 80, checkpoint.evaluation["accuracy"]
    assert page.evaluate("window.__violations") == []
