"""Redis stopped for 30 s while annotators work: every acknowledged judgement is stored once, and the
pairs requested during the outage end done or failed with a reason, none stuck."""

import threading
import time

import httpx
import pytest
from rest_framework.authtoken.models import Token

from accounts.services import user_create
from annotation.models import Turn
from annotation.workspace.simulation import PreferenceModel, SimulationConfig, length_preference, run_simulation
from modelserving.models import Generation

from ..conftest import wait_for
from .conftest import OUTAGE_SECONDS, acknowledged_are_stored_once

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(420)]

PASSWORD = "a-long-password-9"


def answered_turns(api: httpx.Client, n: int) -> list[dict]:
    """n turns of their own dialogues, each with both responses done."""
    turns = []
    for index in range(n):
        dialogue = api.post("/api/dialogues/", json={"focus": "helpfulness"}).json()
        turns.append(api.post(f"/api/dialogues/{dialogue['id']}/turns/", json={"user_message": f"Hi {index}"}).json())
    return [wait_for(lambda t=turn: (lambda got: got if all(got["responses"][s]["status"] == "done" for s in "AB")
                                     else None)(api.get(f"/api/turns/{t['id']}/").json()),
                     timeout=120, message="a pair to be done") for turn in turns]


def test_a_redis_outage_loses_no_judgement_and_leaves_no_pair_stuck(private_redis, web, sampling_worker,
                                                                    model_servers, variant_factory):
    variant_factory("cool", model_servers[0], max_new_tokens=8)
    variant_factory("warm", model_servers[1], max_new_tokens=8)
    names = tuple(f"outage-{i}" for i in range(4))
    for name in names:
        user_create(username=name, password=PASSWORD, role="annotator")
    probe = user_create(username="outage-probe", password=PASSWORD, role="annotator")
    server = web()
    worker = sampling_worker()
    api = httpx.Client(base_url=server.url, timeout=30,
                       headers={"Authorization": f"Token {Token.objects.create(user=probe).key}"})
    ready = answered_turns(api, 3)  # to be judged while Redis is down

    # Simulated annotators work before, during and after the outage.
    config = SimulationConfig(base_url=server.url, usernames=names, password=PASSWORD,
                              model=PreferenceModel(preference=length_preference), dialogues=1000, turns=3,
                              timeout=180, request_retries=20, until=time.monotonic() + 5 + OUTAGE_SECONDS + 10)
    summaries = []
    annotators = threading.Thread(target=lambda: summaries.append(run_simulation(config)), daemon=True)
    annotators.start()
    time.sleep(5)
    private_redis.stop()
    down_at = time.monotonic()
    # The probe judges its answered turns and asks for new pairs while no message can be sent.
    acknowledged = {}
    for turn in ready:
        response = api.post(f"/api/turns/{turn['id']}/judgement/", json={"choice": "A", "strength": "better"})
        assert response.status_code == 201, response.text
        acknowledged[turn["id"]] = {"choice": "A", "strength": "better"}
    during = []
    for index in range(3):
        dialogue = api.post("/api/dialogues/", json={"focus": "helpfulness"}).json()
        posted = api.post(f"/api/dialogues/{dialogue['id']}/turns/", json={"user_message": f"Outage {index}"})
        assert posted.status_code == 201, posted.text  # the request succeeds though the message is not sent
        during.append(posted.json()["id"])
    assert set(Generation.objects.filter(pair__turn__in=during).values_list("status", flat=True)) == {"queued"}
    # The throttles count in the same Redis: they let requests through (the ones above, and this),
    # while the public /health says the service is degraded.
    assert api.get("/api/dialogues/").status_code == 200
    assert httpx.get(server.url + "/health", timeout=30).status_code == 503
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
    private_redis.start()

    annotators.join(timeout=300)
    assert not annotators.is_alive(), "the annotators are still waiting"
    summary = summaries[0]
    summary.reports[0].acknowledged.update(acknowledged)  # the probe's, checked with the rest
    wait_for(lambda: not Generation.objects.filter(status__in=["queued", "running"]).exists(), timeout=120,
             message="no generation left queued or running")
    for generation in Generation.objects.filter(pair__turn__in=during):
        assert generation.status == "done" or (generation.status == "failed" and generation.error), generation
        assert generation.recoveries >= 1, "sent by the recovery sweep once Redis was back"
    assert summary.failures == [], summary.failures
    acknowledged_are_stored_once(summary)
    assert Turn.objects.filter(submitted_at__isnull=False).count() > len(acknowledged), "the annotators judged too"
    assert "generations_recover" in worker.log_path.read_text()
