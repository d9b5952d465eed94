"""The report as the command line prints it: plain column headers, a legend under each table, and
a "what to do" line wherever an answer is fragile."""

from __future__ import annotations

from redundancy.advice.savings import Savings
from redundancy.report import FractionSummary, Recommendation, Report, SkippedFraction

BASELINE_LEGEND: dict[str, str] = {
    "pca": "the top-k principal components of the standardised features",
    "first_k": "the first k neurons (meaningful for nested / Matryoshka layers)",
    "random_projection": "a seeded Gaussian projection to k dimensions (mean over seeds)",
}


def _header(report: Report) -> list[str]:
    m, ds = report.model, report.dataset
    lines = [
        f"model    {m.name}  weights={m.weights_source} ({m.weights_identity})  layer={m.layer} "
        f"[{m.layer_pooling}]  d={m.d}  input={'×'.join(map(str, m.input_size))}",
        f"dataset  {ds.spec}  classes={len(ds.classes)}  " + "  ".join(f"{k}={v}" for k, v in ds.sizes.items()),
    ]
    return lines + [f"WARNING  {w}" for w in report.warnings]


def _num(x: float | None) -> str:
    """Three decimals, or `-` where the value is undefined."""
    return "-" if x is None or x != x else f"{x:.3f}"


def _curve_row(s: FractionSummary, refined: bool) -> str:
    ci = f"{s.ci_low:.3f}–{s.ci_high:.3f}" if s.ci_low is not None and s.ci_high is not None else "-"
    return (
        f"{s.fraction:>9.4g} {s.k:>8d} {s.seeds:>6d} {s.accuracy_mean:>9.4f} {s.accuracy_std:>7.4f} "
        f"{s.accuracy_min:>7.4f} {ci:>13} {_num(s.cka_mean):>10} {_num(s.cka_pair_mean):>9}"
        + ("  (refined)" if refined else "")
    )


def _skipped_row(sk: SkippedFraction) -> str:
    return f"{sk.fraction:>9.4g} {sk.k:>8d} {'-':>6}  skipped: {sk.reason}"


def score_name(report: Report) -> str:
    """What the curve's `accuracy` measures: `accuracy`, or the retrieval metric."""
    return report.config.score_metric


def curve_table(report: Report) -> list[str]:
    """The random subsets per fraction, skipped fractions in their place, and the legend."""
    cfg = report.config
    name = score_name(report)
    retrieval = cfg.task == "retrieval"
    level = f"{cfg.ci_level:.0%} CI"
    refined = {p.k for p in report.curve if p.kind == "refinement"}
    rows: list[tuple[float, int, str]] = [(s.fraction, 0, _curve_row(s, s.k in refined)) for s in report.summary]
    rows += [(sk.fraction, 1, _skipped_row(sk)) for sk in report.skipped_fractions]
    lines = [
        f"task: retrieval, exact top-10 search ({cfg.similarity}), test items query the train items by label"
        if retrieval else f"probe: {report.probe}",
        "",
        f"{'fraction':>9} {'neurons':>8} {'seeds':>6} {name:>9} {'std':>7} {'worst':>7} {level:>13} "
        f"{'CKA layer':>10} {'CKA pair':>9}",
    ]
    lines += [row for _, _, row in sorted(rows)]
    lines += [
        f"  neurons    k = round(fraction × d) neurons drawn at random from d = {report.model.d}; seeds: draws per "
        "fraction (one for the full layer)",
        f"  {name:<10} {'mean over queries' if retrieval else 'test accuracy'}, mean over seeds; std: its standard "
        "deviation; worst: the worst seed",
        f"  {level:<10} bootstrap interval of the mean {name} over {'queries' if retrieval else 'test images'}"
        + ("" if cfg.bootstrap else " (off: --bootstrap 0)"),
        "  CKA layer  linear CKA between the subset and the whole layer (1 = same geometry; train features)",
        f"  CKA pair   linear CKA between two independent random subsets of that size ({cfg.cka}; test features)",
    ]
    return lines


def _pca_cap(report: Report) -> str | None:
    """One line saying why the PCA column stops before k = d, when it does."""
    pca = [b.k for b in report.baselines if b.kind == "pca"]
    if not pca or max(pca) >= report.model.d:
        return None
    top, d, n = max(pca), report.model.d, report.dataset.sizes.get("train")
    bound = f"min(n_train − 1, d) = min({n - 1}, {d})" if n else "min(n_train − 1, d)"
    return (
        f"  PCA stops at k = {top}: the standardised train features have only {top} principal components with "
        f"non-zero variance (at most {bound}); larger k has nothing more to add"
    )


def baseline_table(report: Report) -> list[str]:
    """Accuracy of each baseline by k, its legend, and the PCA cap."""
    if not report.baselines:
        return []
    kinds = list(dict.fromkeys(b.kind for b in report.baselines))
    ks = sorted({b.k for b in report.baselines})
    width = max(17, *(len(k) for k in kinds))
    table = {(b.kind, b.k): b.accuracy_mean for b in report.baselines}
    how = (f"{score_name(report)} by exact search)" if report.config.task == "retrieval"
           else "ridge probe), test accuracy")
    lines = ["", f"baselines ({how} by number of dimensions k:",
             f"{'k':>8} " + " ".join(f"{kind:>{width}}" for kind in kinds)]
    for k in ks:
        cells = [f"{table[(kind, k)]:>{width}.4f}" if (kind, k) in table else f"{'-':>{width}}" for kind in kinds]
        lines.append(f"{k:>8d} " + " ".join(cells))
    legend = dict(BASELINE_LEGEND)
    if report.config.task == "retrieval":
        legend["pca"] = "the top-k principal axes of the corpus, projected without centring (at k = d a rotation)"
    lines += [f"  {kind:<17}  {legend.get(kind, kind)}" for kind in kinds]
    cap = _pca_cap(report)
    return lines + ([cap] if cap else [])


def what_to_do(rec: Recommendation, report: Report) -> str | None:
    """A line of advice when a recommendation below the full layer fails its worst-seed or CI check."""
    if not rec.met_below_full or (rec.holds_worst_seed and rec.holds_ci_lower is not False):
        return None
    cfg = report.config
    steps = []
    if not rec.holds_worst_seed:
        if rec.criterion == "mean":
            steps.append("--criterion worst_seed for an answer every seed meets")
        steps.append(f"more --seeds (now {cfg.seeds}) for a firmer mean")
    if rec.holds_ci_lower is False:
        steps.append(f"more test images (--max-test; now {report.dataset.sizes.get('test', '?')}) for a narrower CI")
    if cfg.refine_resolution is None:
        steps.append("--refine 0.005 to probe between the grid's fractions")
    return "         what to do: " + "; or ".join(steps)


def _robustness(rec: Recommendation) -> str:
    checks = [f"worst seed {'holds' if rec.holds_worst_seed else 'FAILS'} ({rec.worst_seed_accuracy:.4f})"]
    if rec.holds_ci_lower is not None and rec.ci_low is not None:
        low = (f"paired margin low {rec.margin_ci_low:+.4f}" if rec.margin_ci_low is not None
               else f"CI low {rec.ci_low:.4f}")
        checks.append(f"CI lower bound {'holds' if rec.holds_ci_lower else 'FAILS'} ({low})")
    return f"         threshold {rec.threshold:.4f}: " + "; ".join(checks)


def _savings(sv: Savings) -> str:
    return (f"         saves {sv.saved_fraction:.1%}: {sv.embedding_bytes_float32_full / 1e9:.2f} → "
            f"{sv.embedding_bytes_float32_kept / 1e9:.2f} GB per million float32 vectors "
            f"({sv.embedding_bytes_float16_kept / 1e9:.2f} GB float16); head {sv.head_params_full:,} → "
            f"{sv.head_params_kept:,} parameters")


def recommendation_table(report: Report) -> list[str]:
    """One row per δ with its fairness cost; the note or robustness checks, advice; the legend."""
    name = score_name(report)
    lines = ["", f"full-layer {name} {report.full_accuracy:.4f}", "",
             f"{'δ':>6} {'mode':>8} {'criterion':>10} {'f*':>7} {'neurons':>12} {'DR':>6} {name:>8} "
             f"{'Gini full→f*':>16} {'worst class full→f*':>21}  classes that lose most"]
    for r in report.recommendations:
        f = r.fairness
        hurt = ", ".join(f"{c.cls} ({c.change:+.3f})" for c in f.most_hurt_classes) or "-"
        lines.append(
            f"{r.delta:>6g} {r.mode:>8} {r.criterion:>10} {r.fraction:>7g} {f'{r.k} of {r.d}':>12} {r.dr:>6.3f} "
            f"{r.accuracy:>8.4f} {f.gini_full:>7.4f}→{f.gini_at:<7.4f} "
            f"{f.worst_class_full:>10.4f}→{f.worst_class_at:<10.4f}  {hurt}"
        )
        lines.append(f"         {r.note}" if not r.met_below_full else _robustness(r))
        if r.savings is not None:
            lines.append(_savings(r.savings))
        advice = what_to_do(r, report)
        if advice:
            lines.append(advice)
    lines += [
        "  f*         the smallest tested fraction of neurons within δ of the full layer; DR = 1 − f*, the diffused "
        "redundancy",
        "  Gini       inequality of per-class accuracy (0: every class equally accurate), full layer → at f*; "
        "worst class: the lowest per-class accuracy" if report.config.task != "retrieval" else
        "  Gini       inequality of the mean scores of the ten deciles of queries, full layer → at f*; worst class: "
        "the worst decile of queries",
    ]
    return lines


def format_report(report: Report) -> str:
    """Header, curve, baselines, recommendations and timings, as printed by `advisor analyze`."""
    lines = [*_header(report), "", *curve_table(report), *baseline_table(report), *recommendation_table(report)]
    lines += ["", "timings  " + "  ".join(f"{k}={v:.2f}s" for k, v in report.timings.items())
              + f"  device={report.environment.device}"
              + ("  (features from cache)" if report.environment.feature_cache_hit else "")]
    return "\n".join(lines)
