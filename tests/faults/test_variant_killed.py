"""One of three variants' model servers is killed while pairs are sampled. Within the stated time
(VARIANT_CHECK_EVERY + HEALTH_PROBE_TIMEOUT, plus the beat's and the worker's own delay) it leaves
pairing; pairs keep coming from the other two; the generations it had in flight end done or failed
with the reason, none stays queued or running; the variants page names it; once its server answers
again it returns. With two variants set up and one killed, a new dialogue is refused plainly.

Real processes: three `transformers serve` servers on the tiny model, a sampling worker with beat
(the check every second here) on a private Redis."""

import signal
import time

import pytest
from rest_framework.authtoken.models import Token

from bench.processes import ModelServer
from modelserving import services
from modelserving.models import Generation, PolicyVariant, VariantOutage
from modelserving.pairing import TOO_FEW_ANSWER

from ..conftest import PASSWORD, wait_for
from .conftest import publishing_to

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(400)]

CHECK_EVERY, PROBE_TIMEOUT = 1.0, 2.0
# The stated time: a check starts at most CHECK_EVERY after the kill, and its probe gives up after
# PROBE_TIMEOUT; a few seconds more for the beat's tick and the worker taking the message.
LEAVES_WITHIN = CHECK_EVERY + PROBE_TIMEOUT + 5
FAST_CHECKS = {"VARIANT_CHECK_EVERY": str(CHECK_EVERY), "HEALTH_PROBE_TIMEOUT": str(PROBE_TIMEOUT),
               "VARIANT_RETRY_AFTER": "1", "VARIANT_RETRY_MAX": "2"}
PROMPT = [{"role": "user", "content": "Name a river."}]


def _pairs_done(pairs, timeout=180):
    ids = [p.pk for p in pairs]
    return wait_for(lambda: (lambda gs: gs if all(g.is_finished for g in gs) else None)(
        list(Generation.objects.filter(pair_id__in=ids))), timeout=timeout, interval=0.5, message="the pairs")


def test_a_killed_variant_leaves_pairing_and_comes_back(private_redis, sampling_worker, model_servers,
                                                        tiny_model_dir, variant_factory, make_user, client):
    third = ModelServer(tiny_model_dir).start().wait_ready()
    try:
        alpha = variant_factory("alpha", model_servers[0], max_new_tokens=6)
        beta = variant_factory("beta", model_servers[1], max_new_tokens=6)
        gamma = variant_factory("gamma", third, max_new_tokens=6)
        worker = sampling_worker(**FAST_CHECKS)
        with publishing_to(private_redis.url):
            in_flight = [services.pair_request(messages=PROMPT) for _ in range(4)]
        third.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: VariantOutage.objects.filter(variant=gamma, ended_at__isnull=True).exists(),
                 timeout=LEAVES_WITHIN, interval=0.2, message="gamma to leave pairing")
        left_after = time.monotonic() - killed
        print(f"gamma left pairing {left_after:.1f} s after its server was killed")
        outage = VariantOutage.objects.get(variant=gamma, ended_at__isnull=True)
        assert outage.cause == "probe" and "Could not reach the model server" in outage.reason

        # What it had in flight ends done or failed with the reason; nothing stays queued or running.
        for generation in _pairs_done(in_flight):
            assert generation.status == "done" or "Could not reach" in generation.error, generation.error

        # Pairs keep coming, from the other two only.
        with publishing_to(private_redis.url):
            after = [services.pair_request(messages=PROMPT) for _ in range(6)]
        generations = _pairs_done(after)
        assert {g.variant_id for g in generations} == {alpha.id, beta.id}
        assert all(g.status == "done" for g in generations), [g.error for g in generations]

        # The admins' page names it, with why and since when.
        make_user("adm", "admin")
        client.login(username="adm", password=PASSWORD)
        row = client.get("/serving/variants/").content.decode().split('id="variant-gamma"', 1)[1].split("</tr>")[0]
        assert "out</span> since" in row and "Could not reach the model server" in row

        # Its server answers again (same port): the next half-open probe brings it back.
        third = ModelServer(tiny_model_dir, port=third.port).start().wait_ready()
        answered = time.monotonic()
        wait_for(lambda: not VariantOutage.objects.filter(variant=gamma, ended_at__isnull=True).exists(),
                 timeout=2 + CHECK_EVERY + PROBE_TIMEOUT + 5, interval=0.2, message="gamma to come back")
        print(f"gamma was back in pairing {time.monotonic() - answered:.1f} s after its server answered")
        with publishing_to(private_redis.url):
            again = [services.pair_request(messages=PROMPT) for _ in range(8)]
        assert gamma.id in {g.variant_id for g in _pairs_done(again)}

        # Two variants set up, one killed: a new dialogue gets the plain refusal.
        PolicyVariant.objects.filter(pk=alpha.pk).update(is_active=False)
        third.process.send_signal(signal.SIGKILL)
        wait_for(lambda: VariantOutage.objects.filter(variant=gamma, ended_at__isnull=True).exists(),
                 timeout=LEAVES_WITHIN, interval=0.2, message="gamma to leave pairing again")
        ann = make_user("ann")
        refused = client.post("/api/dialogues/", {"focus": "helpfulness"}, content_type="application/json",
                              HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ann).key}")
        assert refused.status_code == 503 and refused.json() == {"detail": TOO_FEW_ANSWER}
        assert "modelserving.variants_check" in worker.log_path.read_text()
    finally:
        third.stop()
