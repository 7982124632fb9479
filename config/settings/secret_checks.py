"""What production refuses in a secret: one shorter than its minimum, with too few distinct
characters, or one that appears anywhere in the repository (the development key of local.py, the
test settings' key, the .env.example placeholder, a key pasted into the docs): anyone can read those.
"""

from __future__ import annotations

import os
from pathlib import Path

# Folders of the tree that are not the repository: what the machine made, not what was written.
NOT_THE_REPOSITORY = {".git", ".venv", "var", "node_modules", "__pycache__", ".pytest_cache", ".schemathesis"}
LARGEST_FILE = 2 * 1024 * 1024
MIN_DISTINCT_CHARACTERS = 5  # Django's check --deploy asks the same of SECRET_KEY


def weakness(name: str, value: str, *, min_length: int) -> str | None:
    """Why ``value`` is too weak for ``name``, or None."""
    if len(value.strip()) < min_length:
        return f"{name} must be at least {min_length} characters long (not counting spaces)."
    if len(set(value)) < MIN_DISTINCT_CHARACTERS:
        return f"{name} must have at least {MIN_DISTINCT_CHARACTERS} distinct characters."
    return None


def found_in_repository(secrets: dict[str, str], root: Path) -> dict[str, str]:
    """name → the first file (relative to ``root``) of the source tree that holds that secret."""
    wanted = {name: value.encode() for name, value in secrets.items() if value}
    found: dict[str, str] = {}
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d not in NOT_THE_REPOSITORY and not d.endswith(".egg-info"))
        for file_name in sorted(files):
            path = Path(folder) / file_name
            try:
                if path.is_symlink() or path.stat().st_size > LARGEST_FILE:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            for name, value in wanted.items():
                if name not in found and value in data:
                    found[name] = str(path.relative_to(root))
            if len(found) == len(wanted):
                return found
    return found
