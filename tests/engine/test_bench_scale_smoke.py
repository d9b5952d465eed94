"""Smoke tests of bench/scale.py and bench/extract.py: `--quick` runs end to end and reports its figures.

No timing assertions: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_scale_quick_reports_every_phase_with_its_peak_memory(tmp_path: Path) -> None:
    _run("scale.py", "--quick", "--seeds", "1", "--work", str(tmp_path), "--json", str(tmp_path / "s.json"))
    points = json.loads((tmp_path / "s.json").read_text())["points"]
    assert [(p["n"], p["d"]) for p in points] == [(2000, 64), (8000, 64), (4000, 32), (4000, 128)]
    for p in points:
        # at most the 14 grid probes: at small d a fraction whose k rounds to 0 or repeats is skipped
        assert 0 < p["probe_grid"]["probes"] <= 14 and 0.0 <= p["probe_grid"]["full_accuracy"] <= 1.0
        for phase in ("accumulate", "probe_grid", "cka"):
            assert p[phase]["s"] > 0 and p[phase]["peak_mib"] > 0
    assert [q.name for q in tmp_path.iterdir()] == ["s.json"]  # the feature stores were removed


def test_extract_quick_prints_both_ratios(tmp_path: Path) -> None:
    out = _run("extract.py", "--quick", "--devices", "cpu", "--json", str(tmp_path / "e.json"))
    rows = json.loads((tmp_path / "e.json").read_text())
    assert [r["kind"] for r in rows] == ["array", "files", "sweep"]
    for r in rows[:2]:
        assert r["ratio"] == r["end_to_end_img_s"] / r["forward_img_s"] and r["ratio_cpu_time"] > 0
    sweep = rows[2]  # the default layer sweep against one layer (issue 21)
    assert sweep["layers"] > 1 and sweep["ratio"] == sweep["sweep_s"] / sweep["one_layer_s"]
    assert sweep["ratio_cpu_time"] > 0
    assert out.count("**") == 6
