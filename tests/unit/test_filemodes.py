"""Issue 18: every exported file gets one mode, 0644 unless ADVISOR_EXPORT_MODE says otherwise (the
.safetensors artifact was 0600 and its card 0644)."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest

from redundancy.deploy.artifact import Artifact, card_path, save_artifact
from redundancy.filemodes import export_mode


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _save(tmp_path: Path) -> Path:
    art = Artifact(indices=np.arange(3, dtype=np.int64), weight=np.ones((3, 2)), bias=np.zeros(2),
                   metadata={"model": {"d": 8, "layer": "x"}, "dataset": {"classes": ["a", "b"]}})
    return save_artifact(art, tmp_path / "head.safetensors")


def test_an_artifact_and_its_card_are_both_0644(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADVISOR_EXPORT_MODE", raising=False)
    path = _save(tmp_path)
    assert (_mode(path), _mode(card_path(path))) == (0o644, 0o644)


def test_the_mode_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADVISOR_EXPORT_MODE", "640")
    path = _save(tmp_path)
    assert (_mode(path), _mode(card_path(path))) == (0o640, 0o640)
    monkeypatch.setenv("ADVISOR_EXPORT_MODE", "rw-r--r--")
    with pytest.raises(ValueError, match="not an octal file mode"):
        export_mode()
