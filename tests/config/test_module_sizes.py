"""A module a reader can hold in their head: none of Tandem's own modules is over 400 lines."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "core", "accounts", "modelserving", "annotation", "training", "safety", "bench", "scripts")
LIMIT = 400


def test_no_module_is_over_400_lines():
    sizes = {path.relative_to(ROOT): len(path.read_text().splitlines())
             for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    assert len(sizes) > 100  # the walk found the project
    too_long = {str(path): n for path, n in sizes.items() if n > LIMIT}
    assert not too_long, too_long
