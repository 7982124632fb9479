"""The tree passes `ruff check` with pyproject.toml's rules (pyflakes, pycodestyle and its line
length, import order, pyupgrade, bugbear)."""

import subprocess
import sys
from pathlib import Path

from bench.processes import ROOT


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run([str(ruff), "check", "--output-format", "concise", "."], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
