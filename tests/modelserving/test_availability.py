"""A variant that cannot answer leaves pairing by itself (modelserving/availability.py): a failed
probe through the sampler's client, or most of its recent generations failed. It is probed again
after a back-off that doubles (half-open) and comes back when it answers; meanwhile no pair uses it,
and where fewer than two variants answer, starting a dialogue or sending a message is refused
plainly (503), naming no variant."""

import random
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotation.workspace import services as annotation
from bench.processes import free_port
from bench.scripted_server import ScriptedServer
from modelserving import availability, services
from modelserving.models import Generation, PolicyVariant, VariantOutage
from modelserving.pairing import NO_VARIANT, TOO_FEW_ANSWER, VariantSpec, pairing_refusal

from ..conftest import PASSWORD

pytestmark = pytest.mark.django_db
PROMPT = [{"role": "user", "content": "Hi"}]


def spec(i, weight=1.0):
    return VariantSpec(i, f"v{i}", 0.5, 0.8, weight)


def test_the_refusal_rule():
    a, b, c = spec(1), spec(2), spec(3)
    assert pairing_refusal([], []) == NO_VARIANT
    assert pairing_refusal([a, b, c], [a, b]) is None
    assert pairing_refusal([a, b, c], [c]) == TOO_FEW_ANSWER  # never one variant against itself
    assert pairing_refusal([a, b], [a]) == TOO_FEW_ANSWER
    assert pairing_refusal([a], [a]) is None  # one variant set up: two temperatures, as ever
    assert pairing_refusal([a], []) == TOO_FEW_ANSWER
    # A variant with no weight is never drawn: it does not make up the second of a pair.
    assert pairing_refusal([a, b, spec(4, 0.0)], [a, spec(4, 0.0)]) == TOO_FEW_ANSWER
    for message in (NO_VARIANT, TOO_FEW_ANSWER):
        assert "v1" not in message and "http" not in message


@pytest.fixture
def up():
    servers = [ScriptedServer([]).start() for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(autouse=True)
def _no_sampling(monkeypatch):
    monkeypatch.setattr("modelserving.tasks.generation_sample.delay_on_commit", lambda *args: None)


def three(variant_factory, up):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    return (variant_factory("alpha", base_url=up[0].base_url, model_name=up[0].model_name),
            variant_factory("beta", base_url=up[1].base_url, model_name=up[1].model_name),
            variant_factory("gamma", base_url=dead, model_name="m"))


def test_a_variant_whose_probe_fails_leaves_pairing_and_no_pair_uses_it(variant_factory, up):
    alpha, beta, gamma = three(variant_factory, up)
    assert availability.variants_check() == {"alpha": "in", "beta": "in", "gamma": "out"}
    outage = VariantOutage.objects.get(variant=gamma, ended_at__isnull=True)
    assert outage.cause == "probe" and outage.reason.startswith(
        f"Its probe failed: Could not reach the model server at {gamma.base_url}")
    assert availability.pairable_or_refuse() == [alpha, beta]
    rng = random.Random(7)
    used = {g.variant_id for _ in range(30)
            for g in services.pair_request(messages=PROMPT, rng=rng).generations.all()}
    assert used == {alpha.id, beta.id}
    # A second check while it is out and its back-off is not over probes nothing of it.
    assert availability.variants_check()["gamma"] == "waiting"


def test_it_is_probed_again_after_a_doubling_back_off_and_comes_back_when_it_answers(variant_factory, up, settings):
    settings.VARIANT_HEALTH = {**settings.VARIANT_HEALTH, "RETRY_AFTER": 10.0, "RETRY_MAX": 25.0}
    _, _, gamma = three(variant_factory, up)
    start = timezone.now()
    availability.variants_check(now=start)
    outage = VariantOutage.objects.get(variant=gamma)
    assert outage.next_probe_at == start + timedelta(seconds=10)
    assert availability.variants_check(now=start + timedelta(seconds=9))["gamma"] == "waiting"
    assert availability.variants_check(now=start + timedelta(seconds=10))["gamma"] == "still_out"
    outage.refresh_from_db()
    assert outage.probes == 2 and outage.next_probe_at == start + timedelta(seconds=30)
    assert availability.variants_check(now=start + timedelta(seconds=30))["gamma"] == "still_out"
    outage.refresh_from_db()
    assert outage.next_probe_at == start + timedelta(seconds=55)  # capped at RETRY_MAX
    # Its server comes back (here: the variant is pointed at one that answers).
    server = ScriptedServer([]).start()
    try:
        PolicyVariant.objects.filter(pk=gamma.pk).update(base_url=server.base_url, model_name=server.model_name)
        assert availability.variants_check(now=start + timedelta(seconds=55))["gamma"] == "back"
    finally:
        server.stop()
    outage.refresh_from_db()
    assert outage.ended_at == start + timedelta(seconds=55)
    assert gamma in availability.pairable_or_refuse()


def test_most_recent_generations_failed_takes_it_out_at_once(variant_factory, up, settings):
    settings.VARIANT_HEALTH = {**settings.VARIANT_HEALTH, "FAILURE_MIN": 3, "FAILURE_SHARE": 0.5}
    settings.SAMPLING = {**settings.SAMPLING, "MAX_ATTEMPTS": 1}
    refusing = ScriptedServer([(400, "no")] * 10).start()
    try:
        variant_factory("alpha", base_url=up[0].base_url, model_name=up[0].model_name)
        bad = variant_factory("bad", base_url=refusing.base_url, model_name=refusing.model_name)
        outcomes = []
        for _ in range(3):
            generation = services.generation_request(variant=bad, messages=PROMPT)
            outcomes.append(services.generation_sample(generation_id=generation.pk).state)
        assert outcomes == ["failed"] * 3
        outage = VariantOutage.objects.get(variant=bad, ended_at__isnull=True)
        assert outage.cause == "failures" and outage.reason == "3 of its last 3 generations failed (within 300 s)."
        # Its probe answers (the server is up), but two variants are set up and one answers: refused.
        with pytest.raises(services.NoActiveVariant, match="Fewer than two models can answer"):
            services.pair_request(messages=PROMPT)
        # Back in pairing, its old failures no longer count against it.
        VariantOutage.objects.filter(pk=outage.pk).update(next_probe_at=timezone.now())
        assert availability.variants_check()["bad"] == "back"
        assert availability.failure_shares([bad.id])[bad.id].finished == 0
        assert availability.variants_check() == {"alpha": "in", "bad": "in"}
    finally:
        refusing.stop()


def test_the_periodic_check_reads_the_failure_share_too(variant_factory, up, settings):
    settings.VARIANT_HEALTH = {**settings.VARIANT_HEALTH, "FAILURE_MIN": 4, "FAILURE_SHARE": 0.5}
    alpha = variant_factory("alpha", base_url=up[0].base_url, model_name=up[0].model_name)
    now = timezone.now()
    for index, status in enumerate(["failed", "failed", "done", "failed", "done"]):
        Generation.objects.create(variant=alpha, model_name="m", messages=PROMPT, temperature=0.5, top_p=0.9,
                                  seed=index, max_tokens=8, status=status, finished_at=now)
    # Older than the window: not counted.
    Generation.objects.create(variant=alpha, model_name="m", messages=PROMPT, temperature=0.5, top_p=0.9, seed=9,
                              max_tokens=8, status="done", finished_at=now - timedelta(seconds=301))
    share = availability.failure_shares([alpha.id])[alpha.id]
    assert (share.failed, share.finished, share.too_high) == (3, 5, True)
    assert availability.variants_check() == {"alpha": "out"}


def test_too_few_variants_answering_refuses_a_dialogue_and_a_message_plainly(client, variant_factory, up,
                                                                             make_user):
    alpha = variant_factory("alpha-secret", base_url=up[0].base_url, model_name=up[0].model_name)
    gamma = variant_factory("gamma-secret", base_url=f"http://127.0.0.1:{free_port()}/v1", model_name="m")
    ann = make_user("ann")
    open_dialogue = annotation.dialogue_start(annotator=ann, focus="helpfulness")
    availability.variants_check()
    assert not VariantOutage.objects.filter(variant=alpha).exists()
    api = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=ann).key}"}
    started = client.post("/api/dialogues/", {"focus": "helpfulness"}, content_type="application/json", **api)
    assert started.status_code == 503 and started.json() == {"detail": TOO_FEW_ANSWER}
    message = client.post(f"/api/dialogues/{open_dialogue.pk}/turns/", {"user_message": "Hi"},
                          content_type="application/json", **api)
    assert message.status_code == 503 and message.json() == {"detail": TOO_FEW_ANSWER}
    client.login(username="ann", password=PASSWORD)
    page = client.post("/annotate/dialogues/", {"focus": "helpfulness"})
    assert page.status_code == 503 and TOO_FEW_ANSWER in page.content.decode()
    htmx = client.post(f"/annotate/dialogues/{open_dialogue.pk}/turns/", {"user_message": "Hi"}, HTTP_HX_REQUEST="true")
    assert htmx.status_code == 503 and TOO_FEW_ANSWER in htmx.content.decode()
    plain = client.post(f"/annotate/dialogues/{open_dialogue.pk}/turns/", {"user_message": "Hi"})
    assert plain.status_code == 503 and TOO_FEW_ANSWER in plain.content.decode()
    for body in (started.content, message.content, page.content, htmx.content, plain.content):
        text = body.decode()
        assert "secret" not in text and gamma.base_url not in text and "127.0.0.1" not in text
    # Nothing was left behind: no dialogue, no turn, no generation.
    assert ann.dialogues.count() == 1 and not Generation.objects.exists()


def test_the_variants_page_names_what_is_out_why_and_since_when(client, variant_factory, up, make_user):
    _, _, gamma = three(variant_factory, up)
    availability.variants_check()
    make_user("adm", "admin")
    client.login(username="adm", password=PASSWORD)
    html = client.get("/serving/variants/").content.decode()
    row = html.split('id="variant-gamma"', 1)[1].split("</tr>", 1)[0]
    outage = VariantOutage.objects.get(variant=gamma)
    assert ("out</span> since" in row
            and f"Its probe failed: Could not reach the model server at {gamma.base_url}" in row)
    assert outage.started_at.strftime("%Y-%m-%d %H:%M:%S") in row
    assert "status-ok\">in<" in html.split('id="variant-alpha"', 1)[1].split("</tr>", 1)[0]
    assert "Out of pairing, lately" in html and "still out" in html
