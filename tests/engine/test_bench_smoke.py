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



def test_load_bench_reads_hey_summaries() -> None:
    """`bench/load.py --generator hey` counts what hey reports: answers below 500 as throughput, 5xx and
    transport errors as errors, client timeouts as timeouts; p50/p99 from its latency distribution.
    The summary is a real hey 0.1.4 run's, with 5xx and errors written in hey's format."""
    sys.path.insert(0, str(ROOT))
    from bench.load import parse_hey

    r = parse_hey((ROOT / "tests/engine/data/hey_summary.txt").read_text(), "list", 5, 1.0)
    assert (r.ok, r.errors, r.timeouts) == (592, 4 + 1, 7)
    assert r.statuses == {200: 590, 503: 4, 429: 2} and r.seconds == 1.0085
    assert (r.percentile(0.5), r.percentile(0.99)) == (0.0060, 0.0309)
    assert r.error_samples == ["Get \"http://127.0.0.1:8000/v1/jobs\": dial tcp 127.0.0.1:8000: connect: "
                               "connection refused"]


def test_load_bench_fairness_report_counts_429s_as_answers() -> None:
    """`bench/load.py --fairness` (issue 23, probe 8): the flood's rate is every answer a second, the 429s
    of the rate limit included; the reader's p99 is shown beside its statuses."""
    sys.path.insert(0, str(ROOT))
    from bench.load import LoadResult, fairness_report

    reader = LoadResult("reader alone", 2, 10.0, latencies=[0.01] * 98 + [0.05] * 2, statuses={200: 100})
    flood = LoadResult("flood", 100, 10.0, latencies=[0.002] * 500, statuses={200: 500, 429: 4500})
    lines = fairness_report([reader, flood]).splitlines()
    assert lines[1].split()[:5] == ["reader", "alone", "2", "10", "10.0"]
    assert "50.0" in lines[1] and "{200: 100}" in lines[1]
    assert lines[2].split()[:3] == ["flood", "100", "500"] and "429: 4500" in lines[2]
