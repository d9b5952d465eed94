"""int8 storage, measured: per-dimension scalar quantisation of the kept dimensions, and the probe
re-scored on quantised test features at the recommended k.

Quantisation is asymmetric and per dimension: `lo`, `hi` are each dimension's min and max on the
calibration rows (the validation split: training-side rows, never the test split), 256 levels,
`scale = (hi − lo)/255` (1 where a dimension is constant), `code = clip(round((x − lo)/scale), 0, 255)`
and the stored value reads back as `lo + code·scale`. A stored vector is k one-byte codes; `lo` and
`scale` are stored once per dimension for the whole index. (The codes are unsigned bytes; an `int8`
column holds `code − 128` and adds 128 back: the same 256 levels.)

The re-score keeps the probe as fitted (same rows, same λ; the weights by one direct solve at that λ)
and changes only the test features; the float reference is the same solve on the float test features,
so the change is the quantisation's alone (the curve's own number can differ from it by a few test
images on degenerate layers, where the engine's eigen-path GCV solve and a direct solve round apart).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from redundancy.advice.recommend import RANDOM_KINDS
from redundancy.probing.ridge import RidgeProber
from redundancy.probing.subsets import draw_subset
from redundancy.report import CurvePoint, QuantisedScore
from redundancy.sources.stats import Standardised

LEVELS = 256
CALIBRATION = ("per-dimension min and max of the validation split (training-side rows), 256 levels, test values "
               "clipped to that range; same probe weights and λ")


def calibrate(x_cal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension `(lo, hi)` on the calibration rows."""
    x = np.asarray(x_cal, dtype=np.float64)
    return x.min(0), x.max(0)


def quantise(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(codes uint8, scale)` of each row of `x` per dimension."""
    span = np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64)
    scale = np.where(span > 0, span / (LEVELS - 1), 1.0)
    codes = np.clip(np.rint((np.asarray(x, dtype=np.float64) - lo) / scale), 0, LEVELS - 1).astype(np.uint8)
    return codes, scale


def dequantise(codes: np.ndarray, lo: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.asarray(lo, dtype=np.float64) + codes.astype(np.float64) * scale


def roundtrip(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """What an int8 store gives back for `x`."""
    codes, scale = quantise(x, lo, hi)
    return dequantise(codes, lo, scale)


def measure_int8(
    problem: Standardised,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    x_cal: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    curve: Sequence[CurvePoint],
    targets: Sequence[tuple[str, int]],
    master_seed: int,
    select: str,
    device: str | torch.device = "cpu",
    subsets: str = "independent",
) -> list[QuantisedScore]:
    """Re-score the ridge probes of each `(method, k)` (`random_subset`: every seed's subset; `first_k`:
    neurons 0..k−1) on int8-quantised test features, at each point's own λ."""
    d = problem.gram.shape[0]
    lo, hi = calibrate(x_cal)
    prober = RidgeProber(problem, x_val, y_val, roundtrip(x_test, lo, hi), y_test, device=device, select=select)
    # the float features scored by the same fixed-λ solve, so that the change is the quantisation's alone
    floats = RidgeProber(problem, x_val, y_val, x_test, y_test, device=device, select=select)
    out = []
    for method, k in dict.fromkeys(targets):
        kinds = RANDOM_KINDS if method == "random_subset" else (method,)
        points = [p for p in curve if p.kind in kinds and p.k == k and p.lam is not None]
        if not points or method not in ("random_subset", "first_k"):
            continue
        accs, refs = [], []
        for p in points:
            subset = draw_subset(d, k, p.seed, master_seed, subsets) if method == "random_subset" else np.arange(k)
            accs.append(prober.probe(subset, lam=p.lam).accuracy)
            refs.append(floats.probe(subset, lam=p.lam).accuracy)
        before = float(np.mean(refs))
        after = float(np.mean(accs))
        out.append(QuantisedScore(method=method, k=k, seeds=len(points), accuracy_float=before,
                                  accuracy_quantised=after, change=after - before, calibration=CALIBRATION))
    return out
