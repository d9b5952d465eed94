"""Smoke test of the probe-grid benchmark: `--quick` runs end to end and reports the ratios.

No timing assertions: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_probe_grid_quick_runs_and_prints_ratios(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "probe_grid.py"), "--quick", "--threads", "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("LogisticRegression", "SGD probe"):
        assert re.search(rf"speed-up vs {name}: [0-9.]+×", proc.stdout), proc.stdout
    result = json.loads(out.read_text())
    assert result["sizes"]["subsets"] == len(result["ours"]["per_subset"])
    for key in ("lr", "sgd"):
        assert result[key]["speedup"]["wall"] > 0 and result[key]["speedup"]["cpu"] > 0
    agree = result["lr"]["agreement"]
    assert agree["subsets"] == len(result["measured_subsets"])
    assert 0 <= agree["mean_abs_diff_points"] <= agree["max_abs_diff_points"] <= 100
