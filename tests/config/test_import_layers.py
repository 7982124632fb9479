"""The floors of docs/architecture.md hold: `lint-imports` checks the import-linter contracts in
pyproject.toml (layers, Django-free jobs and modules, no circles inside an app)."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_contracts_are_declared():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    kinds = {contract["type"] for contract in contracts}
    assert {"layers", "forbidden", "acyclic_siblings"} <= kinds
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    assert layers == ["bench", "config", "training | safety", "annotation", "modelserving", "accounts", "core"]


def test_lint_imports_passes():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
