"""A sharded analysis (row ranges extracted separately, then summed) against one pass over every row:
the same statistics within floating-point tolerance, the same features, the same recommendations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from redundancy import AnalysisConfig, Runtime
from redundancy.pipeline import analyze_from_shards, extract_shard, prepare, run_analysis
from redundancy.sources.extraction import shard_rows, split_ranges
from redundancy.sources.features_store import load_stats
from service.api.schemas import SMALL_JOB_EXAMPLE


def test_split_ranges_cover_each_split_once() -> None:
    sizes = [5, 3, 4]
    ranges = shard_rows(sum(sizes), 4)
    assert ranges == [(0, 4), (4, 8), (8, 12)]
    per_split = [split_ranges(sizes, r) for r in ranges]
    assert per_split[1] == [(4, 5), (0, 3), (0, 0)]
    for i, size in enumerate(sizes):  # the slices of a split tile it exactly, in order
        covered = [x for parts in per_split for x in range(*parts[i])]
        assert covered == list(range(size))
    with pytest.raises(ValueError, match="shard_size"):
        shard_rows(10, 0)


@pytest.mark.parametrize("shard_size", [130])
def test_sharded_equals_unsharded(tmp_path: Path, shard_size: int) -> None:
    cfg = AnalysisConfig.model_validate(SMALL_JOB_EXAMPLE)
    rt = Runtime(cache_dir=None, data_root=tmp_path, work_dir=tmp_path / "work")
    whole = run_analysis(cfg, rt)

    prep = prepare(cfg, rt)
    ranges = shard_rows(sum(map(len, prep.splits)), shard_size)
    assert len(ranges) > 1
    dirs = []
    for i, rows in enumerate(ranges):
        dirs.append(tmp_path / f"shard{i}")
        extract_shard(cfg, prep, rows, dirs[-1], "cpu", rt)
    assert sum(load_stats(d / "stats.npz").n for d in dirs) == len(prep.data.train)  # train rows; report stats add val
    sharded = analyze_from_shards(cfg, rt, dirs)

    a, b = whole.stats, sharded.stats
    assert a is not None and b is not None
    assert a.n == b.n and np.array_equal(a.class_counts, b.class_counts)
    for name in ("total", "gram", "class_sums"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-9, atol=1e-9)
    assert [r.model_dump() for r in sharded.report.recommendations] == [
        r.model_dump() for r in whole.report.recommendations]
    acc_a = [p.accuracy for p in whole.report.curve]
    acc_b = [p.accuracy for p in sharded.report.curve]
    np.testing.assert_allclose(acc_b, acc_a, atol=1e-9)


def test_sharded_retrieval_equals_unsharded(tmp_path: Path) -> None:
    """Retrieval searches the stored train rows: a sharded run joins them in order and scores the same."""
    cfg = AnalysisConfig.model_validate({**SMALL_JOB_EXAMPLE, "task": "retrieval", "metric": "map@10"})
    rt = Runtime(cache_dir=None, data_root=tmp_path, work_dir=tmp_path / "work")
    whole = run_analysis(cfg, rt)
    prep = prepare(cfg, rt)
    dirs = []
    for i, rows in enumerate(shard_rows(sum(map(len, prep.splits)), 130)):
        dirs.append(tmp_path / f"shard{i}")
        extract_shard(cfg, prep, rows, dirs[-1], "cpu", rt)
    sharded = analyze_from_shards(cfg, rt, dirs)
    assert sharded.report.recommendations[0].metric == "map@10"
    np.testing.assert_allclose([p.accuracy for p in sharded.report.curve], [p.accuracy for p in whole.report.curve],
                               atol=1e-9)
    assert [r.k for r in sharded.report.recommendations] == [r.k for r in whole.report.recommendations]
