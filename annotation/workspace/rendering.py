"""The one path by which model output (untrusted text) and guideline markdown become HTML.

markdown-it-py with raw HTML disabled, code blocks highlighted by Pygments into class names,
then nh3 (ammonia) with an allowlist: no raw HTML survives, no images, no attributes that could
carry script or htmx behaviour, and links only to http, https and mailto. Bidirectional control
characters are made visible, so text cannot be reordered on screen ("Trojan Source").
"""

import re

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td", "span", "div",
}
# No style attributes: the Content-Security-Policy forbids inline styles, and text must not restyle the page.
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "span": {"class"}, "div": {"class"}, "code": {"class"},
                      "pre": {"class"}}
URL_SCHEMES = {"http", "https", "mailto"}
# Pygments class names and markdown-it's language class: nothing else gets through.
_CLASS = re.compile(r"^(highlight|language-[\w+-]+|[a-z]{1,3}\d?)$")
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_FORMATTER = HtmlFormatter(nowrap=True)


def _highlight(code: str, language: str, attrs) -> str:
    try:
        lexer = get_lexer_by_name(language) if language else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""  # markdown-it escapes the code itself
    return f'<pre class="highlight"><code>{highlight(code, lexer, _FORMATTER)}</code></pre>'


_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight}).enable(
    ["table", "strikethrough"]).disable("image")


def _filter_attribute(tag: str, name: str, value: str):
    if name == "class":
        kept = [part for part in value.split() if _CLASS.match(part)]
        return " ".join(kept) or None
    return value


def _visible_bidi(text: str) -> str:
    return BIDI_CONTROLS.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)


def render_markdown(text: str) -> str:
    """Sanitised HTML for untrusted markdown. Safe to mark safe in a template."""
    html = _MARKDOWN.render(_visible_bidi(text or ""))
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_filter_attribute,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow ugc",
        strip_comments=True,
    )
