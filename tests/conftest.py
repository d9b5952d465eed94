"""Shared fixtures. Tests never download: the hub is forced offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "cifar10.npz").is_file():
        pytest.skip(f"real CIFAR subset not present at {SHARED_DATA} (../shared/data is absent here)")
    return SHARED_DATA
