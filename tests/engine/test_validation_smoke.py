"""Smoke test of the validation report generator: `bench/validation.py --quick` runs end to end on the
real offline data and writes the markdown with its plots.

Tiny caps and 32 px inputs, so the numbers mean nothing; only the plumbing is checked.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_validation_quick_writes_markdown_and_plots(tmp_path: Path, shared_data: Path) -> None:
    DATA = shared_data
    if not (DATA / "flowers102_64.npz").is_file():
        pytest.skip(f"real Flowers-102 subset not present at {DATA}")
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    out = tmp_path / "docs"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "validation.py"), "--quick", "--data-dir", str(DATA),
         "--out-dir", str(out), "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    md = (out / "validation.md").read_text()
    assert md.startswith("# Validation on real data")
    assert "QUICK SMOKE RUN" in md
    for heading in ("## (a)", "## (b)", "## (c)", "## (d)", "## (e)", "## (f)", "## Where we differ from the paper"):
        assert heading in md, heading
    for name in ("CIFAR-10", "Flowers-102", "digits"):
        assert f"**{name}**" in md
    assert "python bench/validation.py --quick" in md
    # Every embedded image exists, relative to the markdown, and is a PNG.
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links and all(link.startswith("img/") for link in links)
    for link in links:
        png = out / link
        assert png.is_file(), link
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The paper's numbers are shown beside ours.
    assert "0.145" in md and "ResNet50" in md
