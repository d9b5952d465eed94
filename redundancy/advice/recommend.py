"""Advice from a stored curve: the minimal fraction within δ of the full layer, and its fairness cost.

Pure functions over curve points: the service answers any δ from the stored curve, never by
recomputing probes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from redundancy.advice.fairness import fairness_of
from redundancy.advice.savings import savings
from redundancy.advice.uncertainty import PairedBootstrap
from redundancy.config import Criterion, DeltaMode
from redundancy.errors import InvalidConfigError
from redundancy.report import CurvePoint, Fairness, FractionSummary, Recommendation

_EPS = 1e-12


RANDOM_KINDS: tuple[str, ...] = ("random", "refinement")
Intervals = Mapping[int, tuple[float, float]]


def summarize(
    curve: Sequence[CurvePoint], kinds: tuple[str, ...] = RANDOM_KINDS, intervals: Intervals | None = None
) -> list[FractionSummary]:
    """Per distinct k of the given kinds, ascending: mean/std/min accuracy over seeds, mean CKA over the
    seeds where it is defined (with that count), mean per-class accuracy, and the bootstrap interval
    when one is given for that k."""
    groups: dict[int, list[CurvePoint]] = defaultdict(list)
    for p in curve:
        if p.kind in kinds:
            groups[p.k].append(p)
    label = "random" if kinds == RANDOM_KINDS else "+".join(kinds)
    out = []
    for k in sorted(groups):
        pts = groups[k]
        acc = np.array([p.accuracy for p in pts])
        cka = _defined_mean([p.cka for p in pts])
        pairs = _defined_mean([p.cka_pair for p in pts])
        ci = (intervals or {}).get(k)
        out.append(
            FractionSummary(
                kind=label,
                fraction=min(p.fraction for p in pts),
                k=k,
                seeds=len(pts),
                accuracy_mean=float(acc.mean()),
                accuracy_std=float(acc.std(ddof=1)) if len(pts) > 1 else 0.0,
                accuracy_min=float(acc.min()),
                cka_mean=cka[0],
                cka_count=cka[1],
                cka_pair_mean=pairs[0],
                cka_pair_count=pairs[1],
                per_class_accuracy=np.mean([p.per_class_accuracy for p in pts], axis=0).tolist(),
                ci_low=ci[0] if ci else None,
                ci_high=ci[1] if ci else None,
            )
        )
    return out


def _defined_mean(values: Sequence[float | None]) -> tuple[float | None, int]:
    """Mean over the defined values (not None, not NaN) and their count; None when there are none."""
    ok = [float(v) for v in values if v is not None and not np.isnan(v)]
    return (float(np.mean(ok)) if ok else None), len(ok)


def points_at(curve: Sequence[CurvePoint], k: int, kinds: tuple[str, ...] = RANDOM_KINDS) -> list[CurvePoint]:
    """Each seed's point of the given kinds at subset size k."""
    return [p for p in curve if p.kind in kinds and p.k == k]


def fairness_at(
    curve: Sequence[CurvePoint], classes: list[str], d: int, k: int, kinds: tuple[str, ...] = RANDOM_KINDS
) -> Fairness:
    """The fairness cost of keeping `k` of `d` dimensions by the method behind `kinds` (random subsets by
    default): `fairness.fairness_of` on each seed's own point at k against the full layer's random-subset
    points (never the seed-averaged vector; retrieval's Gini from per-query scores). The one place the
    single- and multi-dataset answers and every method's answer get it from."""
    return fairness_of(points_at(curve, d), points_at(curve, k, kinds), classes)


def intervals_from_summary(summary: Sequence[FractionSummary]) -> dict[int, tuple[float, float]]:
    """The stored bootstrap intervals by k, to pass back to `recommend`."""
    return {s.k: (s.ci_low, s.ci_high) for s in summary if s.ci_low is not None and s.ci_high is not None}


def threshold(full_accuracy: float, delta: float, mode: DeltaMode) -> float:
    """The accuracy a fraction must reach: `(1 − δ)·acc(1)` (relative) or `acc(1) − δ` (absolute)."""
    if not 0.0 <= delta < 1.0:
        raise InvalidConfigError(f"delta {delta} is outside [0, 1)", field="delta")
    if mode == "relative":
        return (1.0 - delta) * full_accuracy
    if mode == "absolute":
        return full_accuracy - delta
    raise InvalidConfigError(f"delta_mode {mode!r} is not 'relative' or 'absolute'", field="delta_mode")


def criterion_stat(s: FractionSummary, criterion: Criterion) -> float:
    """The accuracy the criterion reads: the seed mean or the worst seed."""
    return s.accuracy_mean if criterion == "mean" else s.accuracy_min


def meets(s: FractionSummary, bar: float, criterion: Criterion) -> bool:
    """Whether a summarised k reaches the threshold under the criterion (the one rule every answer uses)."""
    return criterion_stat(s, criterion) >= bar - _EPS


def recommend(
    curve: Sequence[CurvePoint],
    classes: list[str],
    d: int,
    delta: float,
    mode: DeltaMode = "relative",
    criterion: Criterion = "mean",
    intervals: Intervals | None = None,
    paired: PairedBootstrap | None = None,
    reference: float | None = None,
) -> Recommendation:
    """The smallest tested fraction whose accuracy (seed mean, or worst seed) is within δ of the full
    layer's; fraction 1.0, said so, when none below 1 is.

    Whether it holds under the test-set bootstrap: with `paired` (per-sample correctness, at analysis
    time) from the paired interval of (accuracy − threshold), the full layer resampled on the same
    images; otherwise, from a stored report, from the stored interval of the fraction's accuracy
    against the fixed threshold (`ci_method` says which). Fairness is per seed (`fairness_at`)."""
    if criterion not in ("mean", "worst_seed"):
        raise InvalidConfigError(f"criterion {criterion!r} is not 'mean' or 'worst_seed'", field="criterion")
    summary = summarize(curve, intervals=intervals)
    full = next((s for s in summary if s.k == d), None)
    if full is None:
        raise InvalidConfigError(f"the curve has no full-layer point (k = d = {d})", field="curve")
    ref = full.accuracy_mean if reference is None else reference  # the layer sweep: the reference layer's
    bar = threshold(ref, delta, mode)
    chosen = next((s for s in summary if meets(s, bar, criterion)), full)
    below_full = chosen.k < d
    acc = criterion_stat(chosen, criterion)
    metric = next((p.metric for p in curve if p.kind in RANDOM_KINDS and p.k == d), "accuracy")
    bound = f"(1 − {delta})·{ref:.4f}" if mode == "relative" else f"{ref:.4f} − {delta}"
    if below_full:
        note = (
            f"{chosen.k} of {d} neurons (fraction {chosen.fraction:g}) is the smallest tested subset whose "
            f"{'seed-mean' if criterion == 'mean' else 'worst-seed'} {metric} {acc:.4f} reaches "
            f"{bound} = {bar:.4f}."
        )
    else:
        note = (
            f"No tested fraction below 1 reaches {bound} = {bar:.4f}; keep the full layer "
            f"({d} neurons)."
        )
    fraction = chosen.fraction if below_full else 1.0
    refined = any(p.kind == "refinement" and p.k == chosen.k for p in curve)
    robust = _ci_holds(chosen, bar, delta, mode, paired)
    return Recommendation(
        delta=delta,
        mode=mode,
        criterion=criterion,
        fraction=fraction,
        k=chosen.k,
        d=d,
        dr=(d - chosen.k) / d if below_full else 0.0,  # 1 − k/d exactly: 0.2, not 0.19999999999999996
        accuracy=acc,
        full_accuracy=full.accuracy_mean,
        metric=metric,
        score=acc,
        full_score=full.accuracy_mean,
        threshold=bar,
        met_below_full=below_full,
        holds_worst_seed=chosen.accuracy_min >= bar - _EPS,
        worst_seed_accuracy=chosen.accuracy_min,
        ci_low=chosen.ci_low,
        ci_high=chosen.ci_high,
        refined=refined,
        note=note,
        fairness=fairness_at(curve, classes, d, chosen.k),
        **robust,
        savings=savings(d, chosen.k, len(classes)),
    )


def _ci_holds(
    chosen: FractionSummary, bar: float, delta: float, mode: DeltaMode, paired: PairedBootstrap | None
) -> dict[str, object]:
    """`holds_ci_lower` and the interval behind it: paired margin when available, else the stored CI."""
    if paired is not None and paired.covers(chosen.k):
        lo, hi = paired.margin_ci(chosen.k, delta, mode)
        return {"holds_ci_lower": lo >= -_EPS, "margin_ci_low": lo, "margin_ci_high": hi,
                "ci_method": paired.describe()}
    if chosen.ci_low is None:
        return {"holds_ci_lower": None}
    return {"holds_ci_lower": chosen.ci_low >= bar - _EPS,
            "ci_method": "stored bootstrap interval of this fraction's seed-mean accuracy against the fixed "
            "threshold (the full layer not resampled: no per-sample data in a stored report)"}
