"""The checkout's state as git sees it, to show that the tests leave it as they found it."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tree_state() -> dict[str, str] | None:
    """`git status --porcelain` of the checkout, each entry with the hash of the file's bytes (so rewriting an
    already-changed file counts too); None when this is not a git work tree. Empty in CI's clean clone."""
    try:
        run = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO,
                             capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if run.returncode != 0:
        return None
    state = {}
    for line in run.stdout.splitlines():
        path = REPO / line[3:].split(" -> ")[-1].strip('"')
        state[line] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    return state


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The entries that appeared, vanished or whose file changed between two states."""
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
