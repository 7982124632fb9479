import pytest
from django.core.cache import cache

from accounts.services import user_create
from bench.processes import free_port
from bench.scripted_server import ScriptedServer
from tests.helpers.silent_server import SilentServer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_public_answer():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def client(client):
    """A researcher: the detailed report. Anonymous visitors get the redacted one (tested below)."""
    user_create(username="res", password="a-long-password-9", role="researcher")
    client.login(username="res", password="a-long-password-9")
    return client


def test_health_is_green_when_database_broker_and_variants_answer(client, variant_factory, model_servers):
    variant_factory("cool", model_servers[0])
    variant_factory("warm", model_servers[1])
    response = client.get("/health", HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] and body["database"]["ok"] and body["broker"]["ok"]
    assert [v["name"] for v in body["variants"]] == ["cool", "warm"]
    assert all(v["ok"] and v["model"] in v["models"] for v in body["variants"])


def test_health_is_503_and_names_the_variant_that_is_down(client, variant_factory, model_server):
    variant_factory("cool", model_server)
    variant_factory("gone", base_url=f"http://127.0.0.1:{free_port()}/v1", model_name="m")
    response = client.get("/health?format=json")
    assert response.status_code == 503
    variants = {v["name"]: v for v in response.json()["variants"]}
    assert variants["cool"]["ok"] and not variants["gone"]["ok"] and variants["gone"]["error"]


def test_health_flags_an_endpoint_that_serves_another_model(client, variant_factory, model_server):
    variant_factory("mismatch", model_server, model_name="some-other-model")
    body = client.get("/health?format=json").json()
    assert not body["ok"] and "does not serve" in body["variants"][0]["error"]


def test_health_does_not_hang_on_an_endpoint_that_never_answers(client, variant_factory, settings):
    settings.HEALTH_PROBE_TIMEOUT = 0.5
    silent = SilentServer()
    try:
        variant_factory("silent", base_url=silent.base_url, model_name="m")
        body = client.get("/health?format=json").json()
        assert not body["variants"][0]["ok"]
    finally:
        silent.close()


def test_health_with_no_variant_is_not_green(client):
    response = client.get("/health?format=json")
    body = response.json()
    assert response.status_code == 503 and not body["sampling"]["ok"]
    assert body["problems"] == ["No active policy variant to sample from: activate one in the admin."]


def test_health_page_for_people(client, variant_factory, model_server):
    variant_factory("cool", model_server)
    response = client.get("/health", HTTP_ACCEPT="text/html")
    assert response.status_code == 200 and b"all green" in response.content
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_anonymous_visitors_get_only_ok_or_503(django_client_anonymous, variant_factory, model_server):
    variant_factory("cool", model_server)
    variant_factory("gone", base_url=f"http://127.0.0.1:{free_port()}/v1", model_name="m")
    for url, accept in (("/health?format=json", "application/json"), ("/health", "text/html")):
        response = django_client_anonymous.get(url, HTTP_ACCEPT=accept)
        # Not even how many variants there are, nor which part is down.
        assert response.status_code == 503 and response.content == b"unavailable\n"


def test_the_public_answer_is_cached_and_staff_get_fresh_details(client, django_client_anonymous,
                                                                 variant_factory, settings):
    # Each public request probing every model server would let anyone hammer them through /health.
    settings.HEALTH_CACHE_SECONDS = 60
    cache.clear()
    probes = ScriptedServer([])
    probes.start()
    try:
        variant_factory("cool", base_url=probes.base_url, model_name=probes.model_name)
        seen = []
        original = probes.httpd.RequestHandlerClass.do_GET

        def counting(handler):
            seen.append(handler.path)
            return original(handler)

        probes.httpd.RequestHandlerClass.do_GET = counting
        for _ in range(5):
            assert django_client_anonymous.get("/health").content == b"ok\n"
        assert len(seen) == 1
        assert client.get("/health?format=json").json()["variants"][0]["name"] == "cool"
        assert len(seen) == 2
    finally:
        probes.stop()
        cache.clear()


def test_the_public_answer_is_503_when_the_cache_is_down(django_client_anonymous, variant_factory, settings):
    server = ScriptedServer([]).start()
    variant_factory("cool", base_url=server.base_url, model_name=server.model_name)
    cache.clear()
    assert django_client_anonymous.get("/health").status_code == 200
    cache.clear()
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache",
                                   "LOCATION": f"redis://127.0.0.1:{free_port()}/0"}}
    from django.core.cache import caches

    caches._settings = caches.settings = settings.CACHES
    try:
        del caches.__dict__["default"]
    except KeyError:
        pass
    response = django_client_anonymous.get("/health")
    server.stop()
    assert response.status_code == 503 and response.content == b"unavailable\n"


@pytest.fixture
def django_client_anonymous():
    from django.test import Client

    return Client()


def test_the_probe_goes_through_the_samplers_own_client(client, variant_factory, model_servers, monkeypatch,
                                                         django_client_anonymous):
    # The install that broke every generation (an SDK refusing the client's arguments) broke the
    # probe too once it went through the same code: /health says so instead of "ok".
    variant_factory("cool", model_servers[0])
    variant_factory("warm", model_servers[1])
    assert client.get("/health?format=json").status_code == 200

    def refused(*args, **kwargs):
        raise TypeError("Invalid timeout: expected a number, `None`, a tuple or `httpx2.Timeout`")

    monkeypatch.setattr("modelserving.client.openai.DefaultHttpxClient", refused)
    body = client.get("/health?format=json").json()
    assert not body["ok"] and not body["sampling"]["ok"]
    assert all(v["error"].startswith("the client could not be used (TypeError: Invalid timeout")
               for v in body["variants"])
    cache.clear()
    assert django_client_anonymous.get("/health").status_code == 503


def test_staff_see_each_variants_failures_and_place_in_pairing(client, variant_factory, model_servers):
    from django.utils import timezone

    from modelserving import availability
    from modelserving.models import Generation

    cool = variant_factory("cool", model_servers[0])
    variant_factory("warm", model_servers[1])
    gone = variant_factory("gone", base_url=f"http://127.0.0.1:{free_port()}/v1", model_name="m")
    for status in ("failed", "done"):
        Generation.objects.create(variant=cool, model_name="m", messages=[], temperature=0.5, top_p=0.9, seed=1,
                                  max_tokens=8, status=status, finished_at=timezone.now())
    availability.variants_check()
    response = client.get("/health?format=json")
    # Two of three answer: pairs can be sampled, so Tandem is up; the staff view names the one out.
    assert response.status_code == 200
    variants = {v["name"]: v for v in response.json()["variants"]}
    assert variants["cool"]["failures"] == {"failed": 1, "finished": 2, "share": 0.5, "window_s": 300.0,
                                            "too_high": False}
    assert variants["cool"]["in_pairing"] and variants["warm"]["in_pairing"]
    assert not variants["gone"]["ok"] and not variants["gone"]["in_pairing"]
    assert variants["gone"]["out_of_pairing"]["reason"].startswith("Its probe failed")
    html = client.get("/health", HTTP_ACCEPT="text/html").content.decode()
    assert "Its probe failed" in html and "1 of 2" in html
    gone.delete()


def test_the_public_answer_is_unavailable_when_no_pair_could_be_sampled(django_client_anonymous, variant_factory,
                                                                       model_servers):
    variant_factory("cool", model_servers[0])
    variant_factory("warm", model_servers[1])
    variant_factory("gone", base_url=f"http://127.0.0.1:{free_port()}/v1", model_name="m")
    assert django_client_anonymous.get("/health").status_code == 200  # two of three still answer
    cache.clear()
    from modelserving.models import PolicyVariant

    PolicyVariant.objects.filter(name="warm").update(base_url=f"http://127.0.0.1:{free_port()}/v1")
    assert django_client_anonymous.get("/health").content == b"unavailable\n"


@pytest.mark.django_db(transaction=True)
def test_concurrent_public_requests_probe_once(live_server, variant_factory, settings):
    import threading

    import httpx

    settings.HEALTH_CACHE_SECONDS = 60
    cache.clear()
    probes = ScriptedServer([], chunk_delay=0).start()
    seen = []
    original = probes.httpd.RequestHandlerClass.do_GET

    def slow_counting(handler):
        seen.append(handler.path)
        import time

        time.sleep(0.5)  # a probe that takes a while: every request arrives while it runs
        return original(handler)

    probes.httpd.RequestHandlerClass.do_GET = slow_counting
    try:
        variant_factory("cool", base_url=probes.base_url, model_name=probes.model_name)
        start = threading.Barrier(12)
        answers = []

        def ask():
            start.wait()
            answers.append(httpx.get(live_server.url + "/health", timeout=30).status_code)

        threads = [threading.Thread(target=ask) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == [200] * 12
        assert seen == ["/v1/models"], seen
    finally:
        probes.stop()
        cache.clear()


def test_another_process_computing_the_answer_is_waited_for(variant_factory, settings):
    import threading

    from config import health

    probes = ScriptedServer([]).start()
    seen = []
    original = probes.httpd.RequestHandlerClass.do_GET
    probes.httpd.RequestHandlerClass.do_GET = lambda handler: (seen.append(handler.path), original(handler))
    try:
        variant_factory("cool", base_url=probes.base_url, model_name=probes.model_name)
        cache.set(health.COMPUTING_KEY, 1, timeout=30)  # as another web process holds the lease
        threading.Timer(0.3, lambda: cache.set(health.PUBLIC_KEY, False, timeout=60)).start()
        assert health.public_ok() is False  # its answer, not a probe of this process's own
        assert seen == []
        cache.clear()
        assert health.public_ok() is True and seen == ["/v1/models"]
    finally:
        probes.stop()
