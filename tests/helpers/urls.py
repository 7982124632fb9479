"""Every URL the URL conf defines, made concrete: what the walks over the whole site iterate
(tests/config/test_blindness.py, tests/config/test_html_walk.py)."""

import re
from itertools import product

from django.urls import URLPattern, URLResolver, get_resolver


def url_patterns(resolver=None, prefix="", namespace=""):
    """(route regex, name) of every URL the URL conf defines."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from url_patterns(entry, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), f"{namespace}{entry.name or ''}"


def concrete_urls(route: str, values: dict) -> list[str]:
    """Every URL the route gives with the values of its converters (admin regexes are skipped to
    their index)."""
    route = route.lstrip("^").rstrip("$").replace("\\Z", "")
    if "(?P" in route or "(" in route:
        return ["/" + route.split("(")[0].rstrip("^")]
    params = re.findall(r"<(?:(\w+):)?(\w+)>", route)
    choices = [values.get(name, values["pk"]) for _, name in params]
    urls = []
    for combination in product(*choices):
        url = route
        for value in combination:
            url = re.sub(r"<(?:\w+:)?\w+>", str(value), url, count=1)
        urls.append("/" + url)
    return urls
