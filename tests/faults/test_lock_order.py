"""Locks taken in one order (the batch, then the turn, then its generations): a freeze racing a
rewrite never deadlocks, and a retry racing a "both unusable" judgement never leaves a judged turn
with a response queued again.

Each race is made to happen, not hoped for: the first operation is held inside its transaction,
after it took its locks, until the second one waits on a lock (PostgreSQL says so in
pg_stat_activity; SQLite serialises writing transactions, so there the second one waits at BEGIN).
"""

import threading
import time

import pytest
from django.db import connection

from annotation.batches.services import batch_freeze
from annotation.demonstrations import services as demonstrations
from annotation.models import Batch, Demonstration, Turn
from annotation.workspace import judgements, services
from annotation.workspace.selectors import sides
from modelserving.models import Generation

from ..helpers.preferences import judged_turns

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


class Step(threading.Thread):
    """Runs ``operation`` in a thread of its own (its own database connection); keeps the result or
    the exception."""

    def __init__(self, operation):
        super().__init__(daemon=True)
        self.operation, self.result, self.error = operation, None, None

    def run(self):
        try:
            self.result = self.operation()
        except Exception as error:
            self.error = error
        finally:
            connection.close()


def held_at(monkeypatch, target: str):
    """Patch ``target`` so the first call waits for ``release`` after setting ``reached``."""
    import importlib

    module_name, name = target.rsplit(".", 1)
    module = importlib.import_module(module_name)
    original = getattr(module, name)
    reached, release = threading.Event(), threading.Event()

    def held(*args, **kwargs):
        if not reached.is_set():
            reached.set()
            assert release.wait(30), "never released"
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, held)
    return reached, release


def wait_until_blocked(step: Step, timeout: float = 10) -> None:
    """Until ``step`` waits on a lock (PostgreSQL), or has finished, or a second has passed (SQLite)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and step.is_alive():
        if connection.vendor != "postgresql":
            time.sleep(1)
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event_type = 'Lock'")
            if cursor.fetchone()[0]:
                return
        time.sleep(0.05)


def test_a_freeze_and_a_rewrite_of_the_same_week_do_not_deadlock(offline_variants, make_user, monkeypatch):
    annotator, admin = make_user("ann"), make_user("adm", "admin")
    turn = judged_turns(annotator, n=3)[0]
    batch = Batch.objects.get()
    reached, release = held_at(monkeypatch, "annotation.demonstrations.services._clean_answer")
    rewrite = Step(lambda: demonstrations.demonstration_rewrite(annotator=annotator, turn=turn, answer="Better."))
    rewrite.start()
    assert reached.wait(30)
    freeze = Step(lambda: batch_freeze(batch=batch, admin=admin, force=True))
    freeze.start()
    wait_until_blocked(freeze)
    release.set()
    for step in (rewrite, freeze):
        step.join(30)
        assert not step.is_alive()
    # Before the lock order was one, PostgreSQL found a deadlock here and aborted one of them.
    assert rewrite.error is None and freeze.error is None, (rewrite.error, freeze.error)
    batch.refresh_from_db()
    demonstration = Demonstration.objects.get()
    assert batch.is_frozen and demonstration.batch == batch  # the rewrite got in first, the freeze waited
    assert demonstration.turn == turn


def test_a_retry_and_a_both_unusable_judgement_of_the_same_turn_are_one_after_the_other(
        offline_variants, make_user, monkeypatch):
    annotator = make_user("ann")
    dialogue = services.dialogue_start(annotator=annotator, focus="helpfulness")
    turn = services.turn_post(dialogue=dialogue, annotator=annotator, user_message="Hello")
    a, b = sides(turn)
    Generation.objects.filter(pk=a.pk).update(status="done", text="Fine.", finished_at=a.created_at)
    Generation.objects.filter(pk=b.pk).update(status="failed", error="Gave up after 5 tries.",
                                              finished_at=b.created_at)
    reached, release = held_at(monkeypatch, "modelserving.services.generation_requeue")
    retry = Step(lambda: services.generation_retry(turn=turn, annotator=annotator, side="B"))
    retry.start()
    assert reached.wait(30)
    judge = Step(lambda: judgements.judgement_submit(turn=turn, annotator=annotator, judgement=judgements.Judgement(
        both_unusable=True, unusable_reason="B failed")))
    judge.start()
    wait_until_blocked(judge)
    release.set()
    for step in (retry, judge):
        step.join(30)
        assert not step.is_alive()
    turn.refresh_from_db()
    b.refresh_from_db()
    # The retry held the turn: the judgement waited, then found a response queued again.
    assert retry.error is None and b.status == "queued"
    assert judge.error is not None and "Wait until both responses are complete" in str(judge.error)
    assert not turn.is_judged
    # Never a judged turn whose response is being produced again.
    assert not Turn.objects.filter(submitted_at__isnull=False,
                                   pair__generations__status__in=["queued", "running"]).exists()
