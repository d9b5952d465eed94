"""`advisor analyze`'s extraction bar counts images (done/total) and shows the ETA."""

from __future__ import annotations

import io
import sys

import pytest

from redundancy.cli.main import _Bars
from redundancy.progress import ProgressEvent


def test_extraction_bar_shows_images_done_of_total_and_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    bars = _Bars(enabled=True)
    bars(ProgressEvent("extract", 0.0, 0.05))
    for done in (64, 128):
        bars(ProgressEvent("extract", done / 400, 0.1, images_done=done, images_total=400))
    assert bars.bar is not None and (bars.bar.n, bars.bar.total) == (128, 400)
    bars(ProgressEvent("probe", 0.5, 0.8))
    bars.close()
    out = err.getvalue()
    assert "128/400 images, ETA" in out
    assert "probe" in out and "images" not in out.rsplit("probe", 1)[1]
