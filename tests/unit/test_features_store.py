"""Feature stores (memory-mapped, float16 by default) and the shard statistics API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from redundancy.errors import FeatureRangeError, RedundancyError
from redundancy.sources.extraction import Features, cached_features
from redundancy.sources.features_store import FeatureWriter, load_stats, open_array, save_stats, sum_stats
from redundancy.sources.stats import GramStats


def _data(n: int, d: int = 7, c: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) * 3 + 1).astype(np.float32), rng.integers(0, c, n)


def test_shard_stats_saved_loaded_and_summed_equal_one_pass(tmp_path: Path) -> None:
    x, y = _data(500)
    cuts = [0, 120, 121, 390, 500]  # uneven shards, one of a single row
    for i, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False)):
        save_stats(GramStats.from_features(x[a:b], y[a:b], 3), tmp_path / f"shard{i}.npz")
    total = sum_stats([load_stats(tmp_path / f"shard{i}.npz") for i in range(4)])
    x64 = x.astype(np.float64)
    assert total.n == 500
    np.testing.assert_allclose(total.gram, x64.T @ x64, rtol=1e-12)
    np.testing.assert_allclose(total.total, x64.sum(0), rtol=1e-12)
    np.testing.assert_allclose(total.class_sums, [x64[y == c].sum(0) for c in range(3)], rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(total.class_counts, np.bincount(y, minlength=3))


def test_stats_api_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        sum_stats([])
    with pytest.raises(ValueError, match="part 1 has d=4"):
        sum_stats([GramStats.empty(3, 2), GramStats.empty(4, 2)])
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(RedundancyError, match="cannot read statistics"):
        load_stats(tmp_path / "junk.npz")
    with pytest.raises(RedundancyError, match="cannot read statistics"):
        load_stats(tmp_path / "absent.npz")
    np.savez(tmp_path / "foreign.npz", n=np.asarray(3))
    with pytest.raises(RedundancyError, match="not a statistics file"):
        load_stats(tmp_path / "foreign.npz")


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_writer_streams_batches_into_a_memory_map(tmp_path: Path, dtype: str) -> None:
    x, _ = _data(103)
    w = FeatureWriter(tmp_path / "x.npy", 103, dtype)  # type: ignore[arg-type]
    for i in range(0, 103, 10):
        w.append(x[i : i + 10])
    w.close()
    got = open_array(tmp_path / "x.npy")
    assert isinstance(got, np.memmap) and got.dtype == np.dtype(dtype) and got.shape == (103, 7)
    rtol = 1e-3 if dtype == "float16" else 0  # float16 keeps 11 significant bits
    np.testing.assert_allclose(got, x, rtol=rtol, atol=rtol)


def test_writer_errors(tmp_path: Path) -> None:
    w = FeatureWriter(tmp_path / "a.npy", 3, "float16")
    with pytest.raises(FeatureRangeError, match="float32") as info:
        w.append(np.array([[1.0, 7e4]], np.float32))
    assert info.value.field == "feature_dtype"
    w.abort()
    w = FeatureWriter(tmp_path / "b.npy", 3, "float32")
    w.append(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="width 5"):
        w.append(np.zeros((1, 5), np.float32))
    with pytest.raises(ValueError, match="more than the 3"):
        w.append(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="2 rows written, 3 announced"):
        w.close()


def _features(n: int = 60, keep_train: bool = True) -> Features:
    x, y = _data(n)
    return Features(stats=GramStats.from_features(x[:40], y[:40], 3), x_train=x[:40] if keep_train else None,
                    y_train=y[:40], x_val=x[40:50], y_val=y[40:50], x_test=x[50:], y_test=y[50:], pooling="p")


def test_store_round_trip_and_cache(tmp_path: Path) -> None:
    f = _features()
    calls: list[Path] = []

    def run(store: Path) -> Features:
        calls.append(store)
        f.save(store, "float32")
        return Features.load(store)

    got, hit = cached_features(tmp_path / "cache", tmp_path / "work", "k" * 64, True, run)
    assert not hit and len(calls) == 1
    again, hit = cached_features(tmp_path / "cache", tmp_path / "work", "k" * 64, True, run)
    assert hit and len(calls) == 1
    for a in (got, again):
        np.testing.assert_array_equal(a.x_test, f.x_test)
        np.testing.assert_array_equal(a.x_train, f.x_train)
        np.testing.assert_array_equal(a.y_val, f.y_val)
        np.testing.assert_allclose(a.stats.gram, f.stats.gram)
        assert a.pooling == "p"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["k" * 64]  # no leftovers


def test_a_store_without_train_features_is_redone_for_a_probe_that_needs_them(tmp_path: Path) -> None:
    made: list[bool] = []

    def run(keep: bool):
        def go(store: Path) -> Features:
            made.append(keep)
            _features(keep_train=keep).save(store)
            return Features.load(store)
        return go

    cache = tmp_path / "cache"
    assert cached_features(cache, tmp_path, "key", False, run(False))[0].x_train is None
    assert cached_features(cache, tmp_path, "key", False, run(False))[1]  # ridge: hit
    f, hit = cached_features(cache, tmp_path, "key", True, run(True))  # logistic: needs train samples
    assert not hit and f.x_train is not None
    assert cached_features(cache, tmp_path, "key", False, run(False))[1]
    assert made == [False, True]


def test_without_a_cache_nothing_stays_on_disk(tmp_path: Path) -> None:
    def run(store: Path) -> Features:
        _features().save(store)
        return Features.load(store)

    f, hit = cached_features(None, tmp_path / "work", "key", True, run)
    assert not hit and list((tmp_path / "work").iterdir()) == []
    np.testing.assert_allclose(f.x_val, _features().x_val, rtol=1e-3)  # still readable: mapped, unlinked

    def boom(store: Path) -> Features:
        (store / "partial").write_text("x")
        raise RuntimeError("extraction failed")

    with pytest.raises(RuntimeError):
        cached_features(tmp_path / "c2", tmp_path / "work", "key", False, boom)
    assert list((tmp_path / "c2").iterdir()) == []


def test_a_remote_feature_cache_is_shared_by_machines_with_separate_disks(tmp_path: Path) -> None:
    """Issue 23: host A extracts and uploads to the store; host B, with an empty local cache, copies the
    store's features (a hit, no extraction); a half-uploaded store (no meta.json) is not taken."""
    import fsspec

    remote = f"file://{tmp_path / 'store' / 'features'}"  # any fsspec URL: the code never assumes a local path
    made: list[str] = []

    def run(host: str):
        def go(store: Path) -> Features:
            made.append(host)
            _features().save(store)
            return Features.load(store)
        return go

    a, hit_a = cached_features(tmp_path / "a", tmp_path / "wa", "key", True, run("a"), remote=remote)
    b, hit_b = cached_features(tmp_path / "b", tmp_path / "wb", "key", True, run("b"), remote=remote)
    assert (hit_a, hit_b) == (False, True) and made == ["a"]
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_allclose(a.stats.gram, b.stats.gram)
    fs = fsspec.filesystem("file")
    assert fs.exists(str(tmp_path / "store" / "features" / "key" / "meta.json"))
    # the local copy is a cache: deleting it costs a copy, not an extraction
    import shutil

    shutil.rmtree(tmp_path / "b")
    assert cached_features(tmp_path / "b", tmp_path / "wb", "key", True, run("b"), remote=remote)[1]
    # a store whose meta.json never arrived is incomplete: extracted again
    fs.rm(str(tmp_path / "store" / "features" / "key" / "meta.json"))
    shutil.rmtree(tmp_path / "c", ignore_errors=True)
    assert not cached_features(tmp_path / "c", tmp_path / "wc", "key", True, run("c"), remote=remote)[1]
    assert made == ["a", "c"]
