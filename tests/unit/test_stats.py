from __future__ import annotations

import numpy as np
import torch

from redundancy.sources.stats import GramStats


def test_streaming_batches_and_merge_equal_one_pass() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12)) * 5 + 3
    y = rng.integers(0, 3, size=300)
    whole = GramStats.from_features(x, y, 3)
    streamed = GramStats.empty(12, 3)
    for i in range(0, 300, 64):
        streamed.update(torch.as_tensor(x[i : i + 64]), y[i : i + 64])
    merged = GramStats.from_features(x[:100], y[:100], 3).merge(GramStats.from_features(x[100:], y[100:], 3))
    for s in (streamed, merged):
        assert s.n == whole.n
        np.testing.assert_allclose(s.gram, whole.gram, rtol=1e-12)
        np.testing.assert_allclose(s.class_sums, whole.class_sums, rtol=1e-12)
        np.testing.assert_array_equal(s.class_counts, whole.class_counts)


def test_standardised_quantities_equal_explicit_ones() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6)) * [1, 2, 3, 4, 5, 6] + [10, -3, 0, 1, 2, 100]
    x[:, 2] = 7.0  # a constant neuron stays zero after standardisation, not NaN
    y = rng.integers(0, 4, size=200)
    p = GramStats.from_features(x, y, 4).standardised()
    sd = x.std(0)
    sd[2] = 1.0
    z = (x - x.mean(0)) / sd
    yc = np.eye(4)[y] - np.eye(4)[y].mean(0)
    np.testing.assert_allclose(p.gram, z.T @ z, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(p.targets, z.T @ yc, rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(p.prior, np.bincount(y, minlength=4) / 200)
    assert np.all(np.isfinite(p.gram))


def test_accumulator_buffers_small_batches_into_the_same_sums() -> None:
    from redundancy.sources.stats import GramAccumulator

    rng = np.random.default_rng(2)
    x = rng.normal(size=(1000, 16)) + 2
    y = rng.integers(0, 5, size=1000)
    acc = GramAccumulator(16, 5, block=100)  # 64-row batches flushed every 128 rows
    for i in range(0, 1000, 64):
        acc.update(torch.as_tensor(x[i : i + 64]), torch.as_tensor(y[i : i + 64]))
    got, want = acc.result(), GramStats.from_features(x, y, 5)
    assert got.n == 1000
    np.testing.assert_allclose(got.gram, x.T @ x, rtol=1e-12)
    np.testing.assert_allclose(got.total, x.sum(0), rtol=1e-12)
    np.testing.assert_allclose(got.class_sums, want.class_sums, rtol=1e-12)
    np.testing.assert_array_equal(got.class_counts, np.bincount(y, minlength=5))


def _problem_rows(n: int, d: int, offset: float = 1.0, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.normal(size=(n, d)) + offset, 0.0).astype(np.float32)
    return x, rng.integers(0, 4, size=n)


def test_standardised_problem_from_stats_equals_the_rows_one_when_n_exceeds_d() -> None:
    from redundancy.sources.stats import standardised_from_rows, standardised_problem

    x, y = _problem_rows(2000, 40)
    stats = GramStats.from_features(x[:1500], y[:1500], 4).merge(GramStats.from_features(x[1500:], y[1500:], 4))

    def rows() -> tuple[np.ndarray, np.ndarray]:
        raise AssertionError("the rows are not needed here")

    got, want = standardised_problem(stats, rows), standardised_from_rows(x, y, 4)
    np.testing.assert_allclose(got.gram, want.gram, rtol=0, atol=1e-9 * 2000)
    np.testing.assert_allclose(got.targets, want.targets, rtol=0, atol=1e-9 * 2000)
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-12)
    np.testing.assert_allclose(got.std, want.std, rtol=1e-10)
    np.testing.assert_allclose(got.prior, want.prior)


def test_standardised_problem_goes_to_the_rows_when_the_statistics_are_not_enough() -> None:
    from redundancy.sources.stats import cancellation_error, standardised_from_rows, standardised_problem

    calls: list[int] = []

    def rows_of(x: np.ndarray, y: np.ndarray):  # noqa: ANN202
        def rows() -> tuple[np.ndarray, np.ndarray]:
            calls.append(1)
            return x, y
        return rows

    x, y = _problem_rows(30, 40)  # n ≤ d: the centred Gram has a null space of rounding noise
    got = standardised_problem(GramStats.from_features(x, y, 4), rows_of(x, y))
    np.testing.assert_array_equal(got.gram, standardised_from_rows(x, y, 4).gram)
    assert calls == [1]
    x64, y = _problem_rows(2000, 40)
    x64 = x64.astype(np.float64)
    x64[:, 0] = 1e6 + 1e-3 * x64[:, 0]  # μ/σ ≈ 10⁹: XᵀX − nμμᵀ cancels every digit
    stats = GramStats.from_features(x64, y, 4)
    assert cancellation_error(stats) > 1e-9
    got = standardised_problem(stats, rows_of(x64, y))
    np.testing.assert_array_equal(got.gram, standardised_from_rows(x64, y, 4).gram)
    assert calls == [1, 1]
