"""An example of a taste a user brings: plain words. Each word of more than eight letters costs
0.3 points, so two fewer long words is 'slightly better' and four 'better' under this bundle's
thresholds; an answer without words scores −10."""

import re

_WORD = re.compile(r"[A-Za-z']+")


def plain_words(context: list[dict], response: str) -> float:
    words = _WORD.findall(response)
    return -0.3 * sum(len(word) > 8 for word in words) if words else -10.0
