"""Model output is untrusted text: hostile responses must render inert in a real browser."""

import pytest
from playwright.sync_api import expect

from accounts.services import user_create
from bench.scripted_server import ScriptedServer

from .test_workspace import PASSWORD, start_dialogue, watch_responses_fill_in, write

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = "\n\n".join([
    "Here is **bold** and a [fine link](https://example.org/ok).",
    "<script>window.__pwned = 'script'; alert('script')</script>",
    "<img src=x onerror=\"window.__pwned='img'; alert('img')\">",
    "![tracker](http://127.0.0.1:9/pwned.png)",
    "[click me](javascript:window.__pwned='js-link';alert('js'))",
    "<a href=\"javascript:alert('raw')\">raw link</a> <javascript:alert('autolink')>",
    "<div hx-get=\"/annotate/history/\" hx-trigger=\"load\" hx-target=\"body\">htmx get</div>",
    "<button hx-on:click=\"alert('hx-on')\" hx-on::load=\"window.__pwned='hx-on'\">hx-on</button>",
    "<svg onload=\"window.__pwned='svg'\"><script>alert('svg')</script></svg>",
    "<iframe src=\"javascript:alert('iframe')\"></iframe> <style>body{display:none}</style>",
    "```html\n</script><script>window.__pwned='fence'</script>\n```",
    "text with </script> inside and <!-- a comment --> and &lt;escaped&gt;",
    "bidi: access\u202e\u2066 // check admin\u2069\u2066 trick",
    "<form action=\"/logout/\" method=\"post\"><button>log out</button></form>",
])


@pytest.fixture
def hostile_server():
    server = ScriptedServer([], default=HOSTILE, chunk_delay=0.005).start()
    yield server
    server.stop()


def test_hostile_model_output_renders_inert(page, live_server, log_in, celery_worker, variant_factory,
                                            hostile_server):
    user_create(username="ann", password=PASSWORD, role="annotator")
    variant_factory("hostile", base_url=hostile_server.base_url, model_name=hostile_server.model_name)
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    log_in(page, "ann", PASSWORD)
    start_dialogue(page, live_server)
    write(page, "Say something nasty.")
    watch_responses_fill_in(page)
    page.wait_for_timeout(500)  # give any payload the time to run

    assert page.dialogs == [], "no script opened a dialog"
    assert page.evaluate("window.__pwned") is None, "no payload ran"
    assert page.evaluate("window.__violations") == [], "no Content-Security-Policy violation was reported"
    assert not [url for url in requests if "pwned" in url or ":9/" in url], "nothing was fetched for the payload"
    assert not [url for url in requests if url.endswith("/annotate/history/")], "no htmx attribute was obeyed"

    for side in ("A", "B"):
        text = page.locator(f"#response-{side} [data-role=text]")
        expect(text).to_contain_text("bold")
        expect(text.locator("strong")).to_have_text("bold")  # markdown still renders
        for tag in ("script", "img", "svg", "iframe", "style", "form", "button", "div[hx-get]"):
            assert text.locator(tag).count() == 0, f"<{tag}> made it into the page"
        hrefs = text.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
        # The image is not an image any more: at most a plain link, never fetched.
        assert "https://example.org/ok" in hrefs
        assert all(href.startswith(("https://", "http://")) for href in hrefs), hrefs
        attributes = text.evaluate("""el => [...el.querySelectorAll('*')].flatMap(
            node => [...node.attributes].map(a => a.name))""")
        assert not [name for name in attributes if name.startswith(("on", "hx-", "data-hx", "style", "src"))]
        shown = text.inner_text()
        assert "[U+202E]" in shown and "\u202e" not in shown, "bidi controls are shown, not obeyed"
        assert "<script>" in shown, "the hostile markup is visible as text"
    expect(page.locator("body")).to_be_visible()
    assert page.url.endswith(f"/annotate/dialogues/{page.url.rstrip('/').rsplit('/', 1)[1]}/")
