"""The test tiers of docs/architecture.md: every test file sits in a tier folder, and every tier is a
registered marker (tests/conftest.py gives each test its folder's marker)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.conftest import SLOW_TIERS, TIERS

TESTS = Path(__file__).resolve().parents[1]


def _registered_markers() -> set[str]:
    ini = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    return {line.split(":")[0] for line in ini["markers"]}


def test_every_test_file_is_in_a_tier_folder() -> None:
    folders = {p.relative_to(TESTS).parts[0] for p in TESTS.rglob("test_*.py")}
    assert folders - set(TIERS) == set(), "a new folder of tests needs a tier in tests/conftest.py TIERS"


def test_every_tier_and_the_excluded_marks_are_registered() -> None:
    assert set(TIERS) | {"slow", "integration", "browser"} <= _registered_markers()
    assert set(SLOW_TIERS) <= set(TIERS)


def test_unit_files_load_no_model_and_start_no_process() -> None:
    """What keeps tests/unit fast: no model loaded and no subprocess started (those go to tests/engine)."""
    heavy = ("subprocess", "load_model(", "analyze(", "run_analysis(", "uvicorn")
    offenders = sorted(
        p.name for p in (TESTS / "unit").glob("test_*.py") if p.name != Path(__file__).name
        and any(word in p.read_text() for word in heavy)
    )
    assert offenders == []
