"""Render a result to PNG or SVG: accuracy, CKA and per-class Gini against the neuron fraction.

Three panels sharing a log-scaled fraction axis:

1. test accuracy, seed mean ± std, for the random subsets; the δ band (between the full layer's
   accuracy and the threshold of the first δ) and `f*` marked for each δ; refinement probes as
   separate markers; baselines (PCA, first k, random projection) overlaid where the curve has them;
2. linear CKA with the whole layer (and subset-versus-subset / debiased CKA where present);
3. the Gini coefficient of the (seed-mean) per-class accuracy.

Uses matplotlib's object API (`Figure`, no pyplot), so it is safe in worker threads and needs no
display. Works from the report's JSON (a dict) or a `Report`.
"""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from redundancy.fairness import gini

BASELINE_STYLE: dict[str, tuple[str, str, str]] = {  # kind → (label, colour, marker)
    "pca": ("PCA top-k", "tab:green", "s"),
    "first_k": ("first k neurons", "tab:purple", "^"),
    "random_projection": ("random projection", "tab:brown", "D"),
}
_RANDOM = "random"
_REFINE = ("refinement", "refine")
_DELTA_COLOURS = ("tab:red", "tab:orange", "tab:olive", "tab:cyan", "tab:pink")


def _short_spec(spec: str | None) -> str | None:
    """`npz:/some/where/cifar10.npz` → `npz:cifar10.npz`: no machine paths in a figure."""
    if not spec or ":" not in spec:
        return spec
    scheme, _, path = spec.partition(":")
    return f"{scheme}:{Path(path).name or path}"


def _as_dict(report: Any) -> dict[str, Any]:
    if hasattr(report, "model_dump"):
        return report.model_dump(mode="json", by_alias=True)
    if isinstance(report, dict):
        return report
    raise TypeError(f"expected a Report or its JSON dict, got {type(report).__name__}")


def _groups(points: list[dict[str, Any]], kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per distinct k, ascending: fraction, seed-mean/std of accuracy and CKA, mean per-class vector."""
    by_k: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for p in points:
        if p.get("kind", _RANDOM) in kinds:
            by_k[int(p["k"])].append(p)
    out = []
    for k in sorted(by_k):
        pts = by_k[k]
        acc = np.array([p["accuracy"] for p in pts], dtype=np.float64)

        def mean_of(key: str, pts: list[dict[str, Any]] = pts) -> float | None:
            vals = [p[key] for p in pts if p.get(key) is not None]
            return float(np.mean(vals)) if vals else None

        per_class = [p["per_class_accuracy"] for p in pts if p.get("per_class_accuracy")]
        out.append(
            {
                "k": k,
                "fraction": min(float(p["fraction"]) for p in pts),
                "acc": float(acc.mean()),
                "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                "cka": mean_of("cka"),
                "cka_debiased": mean_of("cka_debiased"),
                "cka_pair": mean_of("cka_pair"),
                "gini": float(np.mean([gini(v) for v in per_class])) if per_class else None,  # per seed
            }
        )
    return out


def _threshold(full: float, delta: float, mode: str) -> float:
    return (1.0 - delta) * full if mode == "relative" else full - delta


def _markers(report: dict[str, Any], random: list[dict[str, Any]], deltas: list[float] | None):
    """(δ, threshold, f*) per δ: from the report's recommendations, or from the curve for other δ."""
    full = float(report.get("full_accuracy", random[-1]["acc"] if random else 0.0))
    mode = (report.get("config") or {}).get("delta_mode", "relative")
    recs = {float(r["delta"]): r for r in report.get("recommendations", [])}
    wanted = sorted(recs) if deltas is None else sorted(set(deltas))
    out = []
    for delta in wanted:
        if delta in recs:
            rec = recs[delta]
            out.append((delta, float(rec["threshold"]), float(rec["fraction"])))
            continue
        bar = _threshold(full, delta, mode)
        f_star = next((g["fraction"] for g in random if g["acc"] >= bar - 1e-12), 1.0)
        out.append((delta, bar, f_star))
    return full, out


def build_figure(report: Any, deltas: list[float] | None = None) -> Figure:
    """The three-panel figure for a report (see the module docstring)."""
    rep = _as_dict(report)
    points = rep.get("curve", [])
    random = _groups(points, (_RANDOM,))
    refine = _groups(points, _REFINE)
    baselines = {kind: _groups(points, (kind,)) for kind in BASELINE_STYLE}
    full, markers = _markers(rep, random, deltas)

    fig = Figure(figsize=(7.5, 10.0), layout="constrained")
    ax_acc, ax_cka, ax_gini = fig.subplots(3, 1, sharex=True)
    title = " · ".join(
        str(x) for x in ((rep.get("model") or {}).get("name"), _short_spec((rep.get("dataset") or {}).get("spec")))
        if x
    )
    if title:
        fig.suptitle(title)

    def xs(groups: list[dict[str, Any]]) -> np.ndarray:
        return np.array([g["fraction"] for g in groups])

    # 1. accuracy
    if random:
        ax_acc.errorbar(
            xs(random), [g["acc"] for g in random], yerr=[g["std"] for g in random],
            color="tab:blue", marker="o", ms=4, capsize=3, label="random subsets (mean ± std)",
        )
    if refine:
        ax_acc.scatter(
            xs(refine), [g["acc"] for g in refine], color="tab:blue", marker="x", zorder=3, label="refinement",
        )
    for kind, groups in baselines.items():
        if groups:
            label, colour, marker = BASELINE_STYLE[kind]
            ax_acc.errorbar(
                xs(groups), [g["acc"] for g in groups], yerr=[g["std"] for g in groups],
                color=colour, marker=marker, ms=4, capsize=2, ls="--", label=label,
            )
    for i, (delta, bar, f_star) in enumerate(markers):
        colour = _DELTA_COLOURS[i % len(_DELTA_COLOURS)]
        if i == 0:
            ax_acc.axhspan(bar, full, color=colour, alpha=0.12, label=f"within δ={delta:g} of full")
        ax_acc.axhline(bar, color=colour, lw=0.8, ls=":")
        for ax in (ax_acc, ax_cka, ax_gini):
            ax.axvline(f_star, color=colour, lw=1.0, ls="-.")
        ax_acc.plot([], [], color=colour, ls="-.", label=f"f* = {f_star:g} at δ={delta:g}")
    ax_acc.axhline(full, color="black", lw=0.8, label=f"full layer {full:.3f}")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.legend(fontsize=7, loc="best")

    # 2. CKA
    def cka_line(ax: Any, groups: list[dict[str, Any]], key: str, **style: Any) -> None:
        have = [g for g in groups if g[key] is not None]
        if have:
            ax.plot(xs(have), [g[key] for g in have], **style)

    cka_line(ax_cka, random, "cka", color="tab:blue", marker="o", ms=4, label="subset vs layer")
    cka_line(ax_cka, random, "cka_debiased", color="tab:cyan", marker="o", ms=3, ls=":",
             label="subset vs layer (debiased)")
    cka_line(ax_cka, random, "cka_pair", color="tab:gray", marker="v", ms=4, ls="--",
             label="subset vs subset")
    for kind, groups in baselines.items():
        label, colour, marker = BASELINE_STYLE[kind]
        cka_line(ax_cka, groups, "cka", color=colour, marker=marker, ms=4, ls="--", label=label)
    ax_cka.set_ylabel("linear CKA")
    ax_cka.set_ylim(-0.05, 1.05)
    if ax_cka.get_legend_handles_labels()[0]:
        ax_cka.legend(fontsize=7, loc="best")

    # 3. per-class Gini
    cka_line(ax_gini, random, "gini", color="tab:blue", marker="o", ms=4, label="random subsets")
    for kind, groups in baselines.items():
        label, colour, marker = BASELINE_STYLE[kind]
        cka_line(ax_gini, groups, "gini", color=colour, marker=marker, ms=4, ls="--", label=label)
    ax_gini.set_ylabel("Gini of per-class accuracy\n(mean of per-seed Ginis)")
    ax_gini.set_xlabel("fraction of neurons kept (log scale)")
    if ax_gini.get_legend_handles_labels()[0]:
        ax_gini.legend(fontsize=7, loc="best")

    for ax in (ax_acc, ax_cka, ax_gini):
        ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.25)
    return fig


def render(report: Any, fmt: Literal["png", "svg"] = "png", deltas: list[float] | None = None,
           dpi: int = 120) -> bytes:
    """The figure as PNG or SVG bytes (SVG keeps text as text; output is deterministic)."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"format {fmt!r} is not 'png' or 'svg'")
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "redundancy-advisor"}):
        fig = build_figure(report, deltas)
        buf = io.BytesIO()
        metadata: dict[str, Any] = {"Date": None} if fmt == "svg" else {}
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=metadata)
    return buf.getvalue()
