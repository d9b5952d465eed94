"""Refinement of the minimal fraction: bisect between the grid's last failing and first passing k.

The grid locates `f*` only to the spacing of the tested fractions (0.5 → 0.8 is 30% of the layer).
After the grid, bisection over integer `k` between the largest failing `k` below the smallest
passing one and that passing `k` narrows the boundary to a requested resolution in
`⌈log2((k_pass − k_fail)/resolution)⌉` extra probes. If accuracy is not monotone in `k` between the
two, the result is *a* pass/fail boundary inside the bracket, not necessarily the smallest one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redundancy.advice.recommend import summarize, threshold
from redundancy.probing.engine import ProbeContext, Probed, probe_random
from redundancy.report import CurvePoint

_EPS = 1e-12


@dataclass
class RefinePoint:
    """One extra probe of the bisection: the subset size, its criterion value, pass or fail."""

    k: int
    value: float
    passed: bool


def resolution_to_k(resolution: float, d: int) -> int:
    """A resolution as a fraction of the layer (e.g. 0.005) in neurons, at least 1."""
    if resolution <= 0:
        raise ValueError("resolution must be > 0")
    return max(1, math.ceil(resolution * d - 1e-9))


def bracket(points: Sequence[tuple[int, float]], threshold: float) -> tuple[int, int] | None:
    """`(k_fail, k_pass)` from a grid's `(k, value)` points: the smallest passing `k` and the
    largest `k` below it (all of which fail); `k_fail = 0` when no smaller `k` was tested.
    None when nothing passes."""
    ordered = sorted(points)
    passing = [k for k, v in ordered if v >= threshold - _EPS]
    if not passing:
        return None
    k_pass = passing[0]
    below = [k for k, _ in ordered if k < k_pass]
    return (below[-1] if below else 0), k_pass


def refine(
    probe_fn: Callable[[int], float],
    k_fail: int,
    k_pass: int,
    threshold: float,
    resolution_k: int = 1,
    should_stop: Callable[[], bool] | None = None,
) -> list[RefinePoint]:
    """Bisect over integer `k` until `k_pass − k_fail ≤ resolution_k`.

    Parameters
    ----------
    probe_fn
        `k ↦` the criterion's value at `k` (the seed-mean accuracy, or the worst seed's).
    k_fail, k_pass
        A failing and a passing subset size, `k_fail < k_pass` (`k_fail = 0` means "no neurons").
    threshold
        The accuracy the criterion must reach; a value passes when `≥ threshold` (within 1e-12).
    resolution_k
        Stop once the bracket is at most this many neurons wide.
    should_stop
        Checked before each probe; when it returns True the points so far are returned.

    Returns
    -------
    The extra probes in the order run. The refined `f*` is the smallest passing `k` among them
    (or `k_pass` if none passed) divided by `d`.
    """
    if not 0 <= k_fail < k_pass:
        raise ValueError(f"need 0 <= k_fail < k_pass, got {k_fail}, {k_pass}")
    if resolution_k < 1:
        raise ValueError("resolution_k must be >= 1")
    out: list[RefinePoint] = []
    while k_pass - k_fail > resolution_k:
        if should_stop is not None and should_stop():
            break
        mid = (k_fail + k_pass) // 2
        value = float(probe_fn(mid))
        passed = value >= threshold - _EPS
        out.append(RefinePoint(k=mid, value=value, passed=passed))
        if passed:
            k_pass = mid
        else:
            k_fail = mid
    return out


class Refinement:
    """For each δ, bisect over k between the grid's last failing and first passing subset size; the
    new probes are kept in `self.found`, the grid's curve is not changed."""

    def __init__(self, ctx: ProbeContext, grid: list[CurvePoint]) -> None:
        self.ctx, self.grid, self.found = ctx, grid, Probed()

    def run(self) -> Probed:
        c = self.ctx.config
        resolution = resolution_to_k(c.refine_resolution or 0.0, self.ctx.d)
        for delta in c.deltas:
            summary = summarize(self.curve())
            full = next(x for x in summary if x.k == self.ctx.d).accuracy_mean
            bar = threshold(full, delta, c.delta_mode)
            br = bracket([(x.k, self.stat(x.k)) for x in summary], bar)
            if br is not None:
                refine(self.probe, br[0], br[1], bar, resolution, should_stop=self.ctx.tracker.should_stop)
        return self.found

    def curve(self) -> list[CurvePoint]:
        return self.grid + self.found.points

    def stat(self, k: int) -> float:
        s = next(x for x in summarize(self.curve()) if x.k == k)
        return s.accuracy_mean if self.ctx.config.criterion == "mean" else s.accuracy_min

    def probe(self, k: int) -> float:
        if all(p.k != k for p in self.curve()):
            d, n = self.ctx.d, self.ctx.config.seeds
            self.found.extend(probe_random(self.ctx, [(k / d, k, n)], "refinement", (0.6, 0.6)))
        return self.stat(k)
