"""Shared fixtures. Tests never download: the hub is forced offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.checkout import changes, tree_state

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The test tiers (docs/architecture.md, "Which tier a test belongs to"): each folder is a marker of the
# same name, given here, so `pytest -m unit` is `pytest tests/unit`. Beyond its folder a test may
# carry `slow`, `integration` or `browser`; `make test-fast` leaves those three out.
TIERS = ("unit", "engine", "service", "client", "ui", "integration")
SLOW_TIERS = ("engine",)  # real models, real data or subprocesses: minutes on 2 CPU cores


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        try:
            tier = item.path.resolve().relative_to(tests_dir).parts[0]
        except ValueError:  # a test outside tests/ (a file given on the command line)
            continue
        if tier in TIERS:
            item.add_marker(tier)
        if tier in SLOW_TIERS:
            item.add_marker("slow")


_TREE_BEFORE: dict[str, str] | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _TREE_BEFORE
    _TREE_BEFORE = tree_state()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run that changed the checkout fails, whichever test wrote into it (they write to temporary
    directories; `make screenshots` is the one way docs/img changes)."""
    after = tree_state()
    if _TREE_BEFORE is None or after is None or os.environ.get("ADVISOR_SCREENSHOT_DIR"):
        return
    changed = changes(_TREE_BEFORE, after)
    if changed:
        print("\nthe tests changed the checkout (git status --porcelain):\n  " + "\n  ".join(changed))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

def _shared_data() -> Path:
    """Real data subsets: $ADVISOR_SHARED_DATA, else ../shared/data beside the checkout, else /work/shared/data."""
    candidates = [Path(p) for p in [os.environ.get("ADVISOR_SHARED_DATA", "")] if p]
    candidates += [Path(__file__).resolve().parents[1].parent / "shared" / "data", Path("/work/shared/data")]
    return next((c for c in candidates if (c / "cifar10.npz").is_file()), candidates[0])


SHARED_DATA = _shared_data()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """`shared_data` for module- and session-scoped fixtures."""
    if not (SHARED_DATA / "cifar10.npz").is_file():
        pytest.skip(f"real CIFAR subset not present at {SHARED_DATA} (../shared/data is absent here)")
    return SHARED_DATA


@pytest.fixture
def shared_data(shared_data_dir: Path) -> Path:
    return shared_data_dir
