"""The recovery sweep: what is stuck is sent again through the sampling task, what is not is left
alone, and what stays stuck ends failed with the reason. End to end (a purged queue, a Redis
outage) in tests/faults/."""

import logging
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from bench.processes import free_port
from modelserving import recovery, services
from modelserving.models import Generation

from ..faults.conftest import publishing_to

pytestmark = pytest.mark.django_db

PROMPT = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def sent(monkeypatch):
    ids = []
    monkeypatch.setattr("modelserving.tasks.generation_sample.delay_on_commit", ids.append)
    return ids


def aged(generation, *, status, seconds_since_change=0.0, lease_lapsed_for=None, recoveries=0, attempts=0,
         lapses=0):
    now = timezone.now()
    Generation.objects.filter(pk=generation.pk).update(
        status=status, updated_at=now - timedelta(seconds=seconds_since_change), recoveries=recoveries, lapses=lapses,
        attempts=attempts, lease_token=Generation.new_lease_token() if status == "running" else None,
        lease_expires_at=None if lease_lapsed_for is None else now - timedelta(seconds=lease_lapsed_for),
        finished_at=now if status in ("done", "failed") else None)
    generation.refresh_from_db()
    return generation


def test_stuck_generations_are_sent_again_and_the_rest_left_alone(variant_factory, sent, settings):
    settings.RECOVERY = {**settings.RECOVERY, "QUEUED_AFTER": 120, "LAPSED_AFTER": 30, "MAX_REQUEUES": 3}
    variant_factory("v", base_url="http://127.0.0.1:9/v1", model_name="m")
    pairs = [services.pair_request(messages=PROMPT) for _ in range(4)]
    sent.clear()
    lost, waiting, abandoned, alive, done, patient, crashing, _ = [g for pair in pairs for g in pair.generations.all()]
    aged(lost, status="queued", seconds_since_change=121)  # its message never came
    aged(waiting, status="queued", seconds_since_change=60)  # waiting for a worker, or for its next try
    aged(abandoned, status="running", lease_lapsed_for=31, attempts=1)  # its worker died, no redelivery
    aged(alive, status="running", lease_lapsed_for=-20, attempts=1)  # being written right now
    aged(done, status="done", seconds_since_change=10_000)
    # Sent again many times while the broker was down, never started: it did nothing wrong.
    aged(patient, status="queued", seconds_since_change=500, recoveries=7)
    # Its worker died under it three times already: a fourth lapse ends it.
    aged(crashing, status="running", lease_lapsed_for=31, attempts=3, recoveries=3, lapses=3)

    recovered = recovery.generations_recover()
    assert sorted(recovered.requeued) == sorted([lost.pk, abandoned.pk, patient.pk])
    assert recovered.failed == [crashing.pk]
    assert sorted(sent) == sorted(recovered.requeued)
    for generation, recoveries, lapses in ((lost, 1, 0), (abandoned, 1, 1), (patient, 8, 0)):
        generation.refresh_from_db()
        assert generation.status == "queued" and generation.lease_token is None
        assert (generation.recoveries, generation.lapses) == (recoveries, lapses)
    abandoned.refresh_from_db()
    assert abandoned.attempts == 1  # its next claim counts the try; the cap on tries still holds
    for generation, status in ((waiting, "queued"), (alive, "running"), (done, "done")):
        generation.refresh_from_db()
        assert generation.status == status and generation.recoveries == 0
    crashing.refresh_from_db()
    assert crashing.status == "failed" and crashing.finished_at is not None
    assert crashing.error.startswith("Gave up: the worker running it stopped 4 times before it finished")
    # Sent again just now: not stuck until the threshold passes once more.
    assert recovery.generations_recover().requeued == []


def test_a_queued_generation_is_never_failed_by_the_sweep(variant_factory, sent, settings):
    # A broker that stays down for hours: the sweep keeps sending, never gives up on work not started.
    settings.RECOVERY = {**settings.RECOVERY, "QUEUED_AFTER": 10, "MAX_REQUEUES": 2}
    variant_factory("v", base_url="http://127.0.0.1:9/v1", model_name="m")
    generation = services.pair_request(messages=PROMPT).generations.first()
    for _ in range(5):
        generation.refresh_from_db()
        aged(generation, status="queued", seconds_since_change=11, recoveries=generation.recoveries)
        assert recovery.generations_recover().requeued == [generation.pk]
    generation.refresh_from_db()
    assert generation.status == "queued" and generation.recoveries == 5 and generation.lapses == 0


def test_one_row_the_database_refuses_does_not_stop_the_sweep(variant_factory, sent, settings, caplog):
    # A stuck generation of a batch frozen since: the frozen-batch trigger refuses its update. The
    # others are still sent, and the refusal is logged.
    from accounts.services import user_create
    from annotation.batches.services import batch_freeze
    from annotation.models import Batch, Turn
    from annotation.workspace import judgements

    from ..faults.seed_judgeable import main as seed

    settings.RECOVERY = {**settings.RECOVERY, "QUEUED_AFTER": 10}
    seed(1, 1)
    turn = Turn.objects.get()
    judgements.judgement_submit(turn=turn, annotator=turn.dialogue.annotator,
                                         judgement=judgements.Judgement(choice="A", strength="better"))
    turn.refresh_from_db()
    frozen_one = turn.pair.generations.exclude(pk=turn.chosen_generation_id).get()
    aged(frozen_one, status="queued", seconds_since_change=60)
    batch_freeze(batch=Batch.objects.get(), force=True,
                 admin=user_create(username="adm", password="a-long-password-9", role="admin"))
    variant_factory("v", base_url="http://127.0.0.1:9/v1", model_name="m")
    second, third = (services.pair_request(messages=PROMPT).generations.first() for _ in range(2))
    sent.clear()
    for generation in (second, third):
        aged(generation, status="queued", seconds_since_change=60)
    assert frozen_one.pk < min(second.pk, third.pk)  # the sweep meets the refused row first

    # Importing the seed script runs django.setup(), whose logging config drops caplog's root handler:
    # listen on the service's logger itself.
    service_log = logging.getLogger("modelserving.recovery")
    service_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.ERROR, logger="modelserving.recovery"):
            recovered = recovery.generations_recover()
    finally:
        service_log.removeHandler(caplog.handler)
    assert sorted(recovered.requeued) == sorted([second.pk, third.pk]) and recovered.failed == []
    assert sorted(sent) == sorted([second.pk, third.pk])
    assert f"generation {frozen_one.pk} could not be sent again" in caplog.text
    frozen_one.refresh_from_db()
    assert frozen_one.status == "queued" and frozen_one.recoveries == 0
    for generation in (second, third):
        generation.refresh_from_db()
        assert generation.status == "queued" and generation.recoveries == 1


def test_the_operators_command_sends_them_too(variant_factory, sent):
    variant_factory("v", base_url="http://127.0.0.1:9/v1", model_name="m")
    generation = services.pair_request(messages=PROMPT).generations.first()
    sent.clear()
    aged(generation, status="queued", seconds_since_change=30)
    out = StringIO()
    call_command("recover_stuck", "--queued-after", "10", stdout=out)
    assert f"generations sent again: 1 [{generation.pk}]" in out.getvalue() and sent == [generation.pk]


def test_a_broker_that_cannot_take_the_message_does_not_fail_the_request(variant_factory, caplog,
                                                                         django_capture_on_commit_callbacks):
    # The row is committed; the message is not sent. The request succeeds and the sweep sends it later.
    variant_factory("v", base_url="http://127.0.0.1:9/v1", model_name="m")
    with (caplog.at_level(logging.WARNING, logger="tandem.tasks"),
          publishing_to(f"redis://127.0.0.1:{free_port()}/0"),
          django_capture_on_commit_callbacks(execute=True) as callbacks):
        pair = services.pair_request(messages=PROMPT)
    assert len(callbacks) == 2
    assert set(pair.generations.values_list("status", flat=True)) == {"queued"}
    assert caplog.text.count("the recovery sweep sends it again later") == 2
