"""What a recommendation saves, against arithmetic done by hand."""

from __future__ import annotations

import pytest

from redundancy.advice.recommend import recommend
from redundancy.advice.savings import savings
from redundancy.report import CurvePoint


def test_savings_by_hand() -> None:
    # 256 of 1,280 neurons, 10 classes, one million vectors
    s = savings(1280, 256, 10)
    assert s.embedding_bytes_float32_full == 5_120_000_000  # 1e6 · 1280 · 4
    assert s.embedding_bytes_float32_kept == 1_024_000_000  # 1e6 · 256 · 4
    assert s.embedding_bytes_float16_full == 2_560_000_000
    assert s.embedding_bytes_float16_kept == 512_000_000
    assert s.head_params_full == 12_810  # 1280·10 + 10
    assert s.head_params_kept == 2_570  # 256·10 + 10
    assert s.head_macs_full == 12_800 and s.head_macs_kept == 2_560
    assert s.saved_fraction == pytest.approx(0.8)
    assert s.head_params_saved_fraction == pytest.approx(1 - 2570 / 12810)


def test_keeping_everything_saves_nothing_and_vectors_scale_linearly() -> None:
    s = savings(512, 512, 3, vectors=10)
    assert s.embedding_bytes_float32_kept == s.embedding_bytes_float32_full == 10 * 512 * 4
    assert s.saved_fraction == 0.0 and s.head_params_saved_fraction == 0.0


@pytest.mark.parametrize(("d", "k", "c"), [(0, 0, 2), (10, 0, 2), (10, 11, 2), (10, 5, 0)])
def test_impossible_sizes_are_refused(d: int, k: int, c: int) -> None:
    with pytest.raises(ValueError, match="need"):
        savings(d, k, c)


def test_every_recommendation_carries_its_savings() -> None:
    classes = ["a", "b", "c"]

    def point(k: int, seed: int, acc: float) -> CurvePoint:
        return CurvePoint(fraction=k / 100, k=k, seed=seed, accuracy=acc, per_class_accuracy=[acc] * 3, cka=0.5)

    curve = [point(5, 0, 0.5), point(5, 1, 0.52), point(20, 0, 0.88), point(20, 1, 0.9), point(100, 0, 0.9)]
    rec = recommend(curve, classes, 100, 0.05)
    assert rec.k == 20
    assert rec.savings == savings(100, 20, 3)
    assert rec.model_dump(mode="json")["savings"]["embedding_bytes_float16_kept"] == 1_000_000 * 20 * 2
