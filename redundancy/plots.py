"""Render a result to PNG or SVG: the answer, accuracy, CKA and per-class Gini against the fraction.

Every number comes from `redundancy.advice.recommend`: the per-fraction summaries from `summarize`, and each
δ's threshold and `f*` from `recommend` (the same call `GET /recommendation` makes), so the plot and
the API cannot disagree. The title states the answer for the first δ: k of d neurons, DR and the
change in Gini.

Four panels:

0. **zoom**: accuracy on a *linear* fraction axis over the grid points around the first δ's `f*`
   (two tested fractions either side): where the curve crosses the threshold, seeds as dots;
1. test accuracy, seed mean ± std, for the random subsets on a log axis over the whole grid; the δ
   band (between the full layer's accuracy and the first δ's threshold) and `f*` for each δ;
   refinement probes as separate markers; baselines overlaid where the curve has them;
2. linear CKA with the whole layer (and subset-versus-subset / debiased CKA where present);
3. the Gini coefficient of per-class accuracy (mean over seeds of each seed's Gini).

Uses matplotlib's object API (`Figure`, no pyplot), so it is safe in worker threads and needs no
display. Works from a `Report` or its JSON (a dict).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from redundancy.advice.fairness import point_gini
from redundancy.advice.recommend import intervals_from_summary, recommend, summarize
from redundancy.config import Criterion, DeltaMode
from redundancy.report import CurvePoint, FractionSummary, Recommendation, Report

BASELINE_STYLE: dict[str, tuple[str, str, str]] = {  # kind → (label, colour, marker)
    "pca": ("PCA top-k", "tab:green", "s"),
    "first_k": ("first k neurons", "tab:purple", "^"),
    "random_projection": ("random projection", "tab:brown", "D"),
}
_DELTA_COLOURS = ("tab:red", "tab:orange", "tab:olive", "tab:cyan", "tab:pink")
ZOOM_NEIGHBOURS = 2  # tested fractions shown on each side of f* in the linear zoom


@dataclass(frozen=True)
class Marker:
    """What the plot marks for one δ: `recommend()`'s answer, unchanged."""

    rec: Recommendation
    colour: str

    @property
    def f_star(self) -> float:
        return self.rec.fraction


def _short_spec(spec: str | None) -> str | None:
    """`npz:/some/where/cifar10.npz` → `npz:cifar10.npz`: no machine paths in a figure."""
    if not spec or ":" not in spec:
        return spec
    scheme, _, path = spec.partition(":")
    return f"{scheme}:{Path(path).name or path}"


def as_report(report: Report | dict[str, Any]) -> Report:
    """A `Report`, validating its JSON when given a dict."""
    if isinstance(report, Report):
        return report
    if isinstance(report, dict):
        return Report.model_validate(report)
    raise TypeError(f"expected a Report or its JSON dict, got {type(report).__name__}")


def markers(
    report: Report | dict[str, Any],
    deltas: list[float] | None = None,
    mode: DeltaMode | None = None,
    criterion: Criterion | None = None,
) -> list[Marker]:
    """`recommend()` for each δ (default: the report's own δs), in the report's mode and criterion
    unless given."""
    rep = as_report(report)
    wanted = sorted({r.delta for r in rep.recommendations} if deltas is None else set(deltas))
    intervals = intervals_from_summary(rep.summary) or None
    return [
        Marker(
            rec=recommend(
                rep.curve, rep.fairness_groups, rep.model.d, delta,
                mode=mode or rep.config.delta_mode, criterion=criterion or rep.config.criterion,
                intervals=intervals,
            ),
            colour=_DELTA_COLOURS[i % len(_DELTA_COLOURS)],
        )
        for i, delta in enumerate(wanted)
    ]


def title(rep: Report, marks: list[Marker]) -> str:
    """What was analysed and, for the first δ, the answer: k of d, DR, and the change in Gini."""
    head = " · ".join(x for x in (rep.model.name, _short_spec(rep.dataset.spec), f"layer {rep.model.layer}") if x)
    if not marks:
        return head
    r = marks[0].rec
    rule = f"δ = {r.delta:g} ({r.mode}, {r.criterion.replace('_', ' ')})"
    if not r.met_below_full:
        return f"{head}\n{rule}: no tested fraction below 1 is within δ; keep all {r.d} neurons"
    f = r.fairness
    return (
        f"{head}\n{rule}: keep {r.k} of {r.d} neurons (f* = {r.fraction:g}, DR = {r.dr:.3f}); "
        f"Gini {f.gini_full:.3f} → {f.gini_at:.3f} ({f.gini_change:+.3f})"
    )


def _seed_gini(points: list[CurvePoint], k: int, kind: str) -> float | None:
    """Mean over seeds of each seed's Gini (`point_gini`: of per-class accuracy, or retrieval's per-query
    scores) at subset size k (the design's rule: fairness per seed, never of the seed-averaged vector)."""
    vals = [point_gini(p) for p in points if p.kind == kind and p.k == k and p.per_class_accuracy]
    return float(np.mean(vals)) if vals else None


def _mean_defined(values: list[float | None]) -> float | None:
    ok = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(ok)) if ok else None


def _xs(groups: list[FractionSummary]) -> np.ndarray:
    return np.array([g.fraction for g in groups])


def _zoom_range(summary: list[FractionSummary], f_star: float) -> tuple[float, float]:
    """The tested fractions `ZOOM_NEIGHBOURS` either side of f*, with a little margin."""
    fr = sorted({s.fraction for s in summary} | {f_star})
    i = fr.index(f_star)
    lo, hi = fr[max(0, i - ZOOM_NEIGHBOURS)], fr[min(len(fr) - 1, i + ZOOM_NEIGHBOURS)]
    pad = 0.05 * (hi - lo) if hi > lo else 0.05 * max(hi, 1e-3)
    return lo - pad, hi + pad


def _accuracy_bands(ax: Axes, full: float, marks: list[Marker], vlines: list[Axes]) -> None:
    for i, m in enumerate(marks):
        if i == 0:
            ax.axhspan(m.rec.threshold, full, color=m.colour, alpha=0.12, label=f"within δ={m.rec.delta:g} of full")
        ax.axhline(m.rec.threshold, color=m.colour, lw=0.8, ls=":")
        for a in vlines:
            a.axvline(m.f_star, color=m.colour, lw=1.0, ls="-.")
        ax.plot([], [], color=m.colour, ls="-.", label=f"f* = {m.f_star:g} at δ={m.rec.delta:g}")
    ax.axhline(full, color="black", lw=0.8, label=f"full layer {full:.3f}")


def _draw_zoom(ax: Axes, rep: Report, random: list[FractionSummary], marks: list[Marker]) -> None:
    # Why a linear zoom: on the log axis that suits the paper's grid (0.0005 … 1), fractions 0.5–1 share
    # under a tenth of the width, and f* for a small δ usually falls there or a decade below. A linear
    # axis over the tested fractions around f* shows how the curve crosses the threshold, seed by seed.
    m = marks[0]
    lo, hi = _zoom_range(random, m.f_star)
    inside = [s for s in random if lo <= s.fraction <= hi]
    ax.errorbar(_xs(inside), [s.accuracy_mean for s in inside], yerr=[s.accuracy_std for s in inside],
                color="tab:blue", marker="o", ms=4, capsize=3, label="random subsets (mean ± std)")
    seeds = [p for p in rep.curve if p.kind in ("random", "refinement") and lo <= p.fraction <= hi]
    ax.scatter([p.fraction for p in seeds], [p.accuracy for p in seeds], s=9, color="tab:blue", alpha=0.35,
               label="each seed")
    ax.axhline(m.rec.threshold, color=m.colour, lw=0.9, ls=":", label=f"threshold {m.rec.threshold:.3f}")
    ax.axhspan(m.rec.threshold, m.rec.full_accuracy, color=m.colour, alpha=0.12)
    ax.axvline(m.f_star, color=m.colour, lw=1.2, ls="-.", label=f"f* = {m.f_star:g} ({m.rec.k} of {m.rec.d})")
    ax.set_xlim(lo, hi)
    ax.set_xlabel(f"fraction of neurons kept (linear, around f* for δ={m.rec.delta:g})")
    ax.set_ylabel(score_label(rep))
    ax.grid(True, alpha=0.25)
    ax.legend(fontsize=7, loc="lower right")


def score_label(rep: Report) -> str:
    """The score axis: test accuracy, or the retrieval metric (`CurvePoint.metric`)."""
    metric = next((p.metric for p in rep.curve if p.k == rep.model.d), "accuracy")
    return "test accuracy" if metric == "accuracy" else f"retrieval {metric} (mean over queries)"


def _draw_accuracy(ax: Axes, random: list[FractionSummary], refine: list[FractionSummary],
                   baselines: dict[str, list[FractionSummary]], ylabel: str = "test accuracy") -> None:
    if random:
        ax.errorbar(_xs(random), [g.accuracy_mean for g in random], yerr=[g.accuracy_std for g in random],
                    color="tab:blue", marker="o", ms=4, capsize=3, label="random subsets (mean ± std)")
    if refine:
        ax.scatter(_xs(refine), [g.accuracy_mean for g in refine], color="tab:blue", marker="x", zorder=3,
                   label="refinement")
    for kind, groups in baselines.items():
        if groups:
            label, colour, marker = BASELINE_STYLE[kind]
            ax.errorbar(_xs(groups), [g.accuracy_mean for g in groups], yerr=[g.accuracy_std for g in groups],
                        color=colour, marker=marker, ms=4, capsize=2, ls="--", label=label)
    ax.set_ylabel(ylabel)


def _line(ax: Axes, groups: list[FractionSummary], ys: list[float | None], **style: Any) -> None:
    have = [(g.fraction, y) for g, y in zip(groups, ys, strict=True) if y is not None]
    if have:
        ax.plot([x for x, _ in have], [y for _, y in have], **style)


def _draw_cka(ax: Axes, rep: Report, random: list[FractionSummary],
              baselines: dict[str, list[FractionSummary]]) -> None:
    _line(ax, random, [g.cka_mean for g in random], color="tab:blue", marker="o", ms=4, label="subset vs layer")
    debiased = [_mean_defined([p.cka_debiased for p in rep.curve if p.kind == "random" and p.k == g.k])
                for g in random]
    _line(ax, random, debiased, color="tab:cyan", marker="o", ms=3, ls=":", label="subset vs layer (debiased)")
    _line(ax, random, [g.cka_pair_mean for g in random], color="tab:gray", marker="v", ms=4, ls="--",
          label="subset vs subset")
    for kind, groups in baselines.items():
        label, colour, marker = BASELINE_STYLE[kind]
        _line(ax, groups, [g.cka_mean for g in groups], color=colour, marker=marker, ms=4, ls="--", label=label)
    ax.set_ylabel("linear CKA")
    ax.set_ylim(-0.05, 1.05)


def _draw_gini(ax: Axes, rep: Report, random: list[FractionSummary],
               baselines: dict[str, list[FractionSummary]]) -> None:
    _line(ax, random, [_seed_gini(rep.curve, g.k, "random") for g in random], color="tab:blue", marker="o",
          ms=4, label="random subsets")
    for kind, groups in baselines.items():
        label, colour, marker = BASELINE_STYLE[kind]
        _line(ax, groups, [_seed_gini(rep.curve, g.k, kind) for g in groups], color=colour, marker=marker,
              ms=4, ls="--", label=label)
    per = "per-class accuracy" if rep.dataset.fairness_groups is None else "per-query scores"
    ax.set_ylabel(f"Gini of {per}\n(mean of per-seed Ginis)")
    ax.set_xlabel("fraction of neurons kept (log scale)")


def build_figure(
    report: Report | dict[str, Any],
    deltas: list[float] | None = None,
    mode: DeltaMode | None = None,
    criterion: Criterion | None = None,
) -> Figure:
    """The figure for a report (see the module docstring); f* for `deltas` (default: the report's)."""
    rep = as_report(report)
    random = summarize(rep.curve, kinds=("random",))
    refine = summarize(rep.curve, kinds=("refinement",))
    baselines = {kind: summarize(rep.curve, kinds=(kind,)) for kind in BASELINE_STYLE}
    marks = markers(rep, deltas, mode, criterion)
    zoom = bool(marks and random)

    swept = len(rep.layers) > 1
    ratios = ([1.0, 1.1, 0.8, 0.8] if zoom else [1.1, 0.8, 0.8]) + ([1.1] if swept else [])
    fig = Figure(figsize=(7.5, (13.0 if zoom else 10.0) + (3.0 if swept else 0.0)), layout="constrained")
    grid = fig.add_gridspec(len(ratios), 1, height_ratios=ratios)
    ax_zoom = fig.add_subplot(grid[0]) if zoom else None
    ax_acc = fig.add_subplot(grid[1 if zoom else 0])
    ax_cka = fig.add_subplot(grid[2 if zoom else 1], sharex=ax_acc)
    ax_gini = fig.add_subplot(grid[3 if zoom else 2], sharex=ax_acc)
    fig.suptitle(title(rep, marks), fontsize=10)

    if ax_zoom is not None:
        # f* and the threshold over the summary of grid + refinement probes, as `recommend` sees them
        _draw_zoom(ax_zoom, rep, summarize(rep.curve), marks)
    _draw_accuracy(ax_acc, random, refine, baselines, score_label(rep))
    _accuracy_bands(ax_acc, rep.full_accuracy, marks, [ax_acc, ax_cka, ax_gini])
    _draw_cka(ax_cka, rep, random, baselines)
    _draw_gini(ax_gini, rep, random, baselines)
    for ax in (ax_acc, ax_cka, ax_gini):
        ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.25)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    if swept:
        _draw_layers(fig.add_subplot(grid[len(ratios) - 1]), rep)
    return fig


def _draw_layers(ax: Axes, rep: Report) -> None:
    """The layer sweep: seed-mean score against kept neurons k, one line per layer; each δ's (layer, k) starred."""
    for x in rep.layers:
        pts = [s for s in x.summary if s.kind == "random"]
        ax.plot([s.k for s in pts], [s.accuracy_mean for s in pts], marker=".", lw=1.2,
                label=f"{x.layer} (d {x.d})" + (" ref" if x.reference else ""))
    for r in rep.recommendations:
        if r.layer is not None:
            ax.plot([r.k], [r.score if r.score is not None else r.accuracy], marker="*", ms=12, color="black",
                    zorder=5)
            ax.annotate(f"δ {r.delta:g}: {r.layer}, k {r.k}", (r.k, r.accuracy), fontsize=7,
                        xytext=(4, -10), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("kept neurons k (log)")
    ax.set_ylabel(score_label(rep))
    ax.set_title("the layer sweep: one line per layer, ★ the answer across layers", fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="best")


def render(
    report: Report | dict[str, Any],
    fmt: Literal["png", "svg"] = "png",
    deltas: list[float] | None = None,
    dpi: int = 120,
    mode: DeltaMode | None = None,
    criterion: Criterion | None = None,
) -> bytes:
    """The figure as PNG or SVG bytes (SVG keeps text as text; output is deterministic)."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"format {fmt!r} is not 'png' or 'svg'")
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "redundancy-advisor"}):
        fig = build_figure(report, deltas, mode, criterion)
        buf = io.BytesIO()
        metadata: dict[str, Any] = {"Date": None} if fmt == "svg" else {}
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=metadata)
    return buf.getvalue()
