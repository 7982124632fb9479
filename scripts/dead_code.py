"""Dead code: functions and classes that nothing but the tests reference, or nothing at all (vulture).

    python scripts/dead_code.py            # exits 1 and lists them, 0 when there are none

Two scans of Tandem's packages: without the tests and with them. What the first finds unused and
the second does not is referenced only by tests: a test oracle or a leftover the tests keep alive.
What even the second finds unused is referenced nowhere. Both look at functions and classes (a
method may be a framework's hook, which only the framework names, and a test may override it). Left out: whatever a
decorator registers (a URL, a task, an admin, a receiver), what settings and other code name in a
dotted string ("core.middleware.LoginRateLimit"), Django's conventional entry points (an app's
config, a command, a migration), and the short list of ENTRY_POINTS below, each with its reason.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from vulture import Vulture

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["accounts", "annotation", "bench", "config", "core", "modelserving", "safety", "training", "scripts"]
TESTS = ["tests"]
EXCLUDE = ["*/migrations/*"]
KINDS = {"function", "class"}
# Names no Python code of Tandem references, on purpose.
ENTRY_POINTS = {
    # A labeller that `manage.py simulate_annotators --safety …` names by its dotted path.
    "blocklist_safety": "annotation/workspace/simulation.py",
    # The example taste, named as "taste.py:plain_words" by its bundle (bench/tastes/plain-words/taste.json).
    "plain_words": "bench/tastes/plain-words/taste.py",
}
CONVENTIONAL = re.compile(r"^(Command|Migration|\w+Config)$")
DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")


def _named_in_strings(paths: list[Path]) -> set[str]:
    """The last part of every dotted path written in a string ("core.logging.RedactSecrets")."""
    names = set()
    for path in paths:
        try:
            tree = ast.parse(path.read_text(), str(path))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and DOTTED.match(node.value):
                names.add(node.value.rsplit(".", 1)[-1])
    return names


def _unused(root: Path, folders: list[str], ignore: set[str]) -> dict[tuple[str, str], object]:
    vulture = Vulture(verbose=False, ignore_names=sorted(ignore), ignore_decorators=["@*"])
    vulture.scavenge([str(root / folder) for folder in folders], exclude=EXCLUDE)
    return {(item.typ, f"{Path(item.filename).relative_to(root)}:{item.name}"): item
            for item in vulture.get_unused_code(min_confidence=60) if item.typ in KINDS}


def findings(root: Path = ROOT, packages: list[str] = PACKAGES, tests: list[str] = TESTS) -> list[str]:
    sources = [p for folder in packages for p in (root / folder).rglob("*.py") if "migrations" not in p.parts]
    ignore = _named_in_strings(sources) | set(ENTRY_POINTS)
    without_tests = _unused(root, packages, ignore)
    with_tests = _unused(root, packages + tests, ignore)
    found = []
    for key, item in sorted(without_tests.items()):
        if key not in with_tests and not CONVENTIONAL.match(item.name):
            found.append(f"{Path(item.filename).relative_to(root)}:{item.first_lineno}: {item.typ} {item.name!r} "
                         "is referenced only by tests")
    for (kind, _), item in sorted(with_tests.items()):
        in_tests = any(Path(item.filename).is_relative_to(root / folder) for folder in tests)
        if not in_tests and not CONVENTIONAL.match(item.name):
            found.append(f"{Path(item.filename).relative_to(root)}:{item.first_lineno}: {kind} {item.name!r} "
                         "is referenced nowhere")
    return found


def main() -> int:
    found = findings()
    for line in found:
        print(line)
    print(f"dead code: {len(found)} finding(s)" if found else "dead code: none")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
