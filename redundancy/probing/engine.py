"""The probe engine: from stored features to curve points. The training problem the ridge probes fit
(`training_problem`), the prober of the configured kind (`SubsetProber`: ridge groups or the logistic
grid), random subsets with their part-vs-whole and subset-vs-subset CKA (`probe_random`) and the
baselines (`probe_baselines`), all sharing one `ProbeContext`. What to probe beyond the grid (the
refinement of f*) and what the numbers mean (bootstrap, advice) are decided above, in `advice/` and
`pipeline.py`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from redundancy.config import AnalysisConfig
from redundancy.probing.baselines import Baselines, projection_cka, random_projection_matrix
from redundancy.probing.cka import FeatureCKA, GramCKA, cka_rows
from redundancy.probing.lbfgs import train_logistic_lbfgs
from redundancy.probing.logistic import train_logistic_grid
from redundancy.probing.retrieval import RetrievalScorer, pca_axes
from redundancy.probing.ridge import ProbeResult, RidgeProber
from redundancy.probing.subsets import draw_subset
from redundancy.progress import Tracker
from redundancy.report import CurvePoint
from redundancy.sources.extraction import Features
from redundancy.sources.stats import GramStats, Standardised, standardised_from_rows, statistics_suffice


@dataclass
class Probed:
    """Curve points and the random subsets' per-sample test correctness, by k."""

    points: list[CurvePoint] = field(default_factory=list)
    correct: dict[int, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))
    edge_ks: set[int] = field(default_factory=set)

    def extend(self, other: Probed) -> None:
        self.points.extend(other.points)
        for k, arrays in other.correct.items():
            self.correct[k].extend(arrays)
        self.edge_ks |= other.edge_ks


@dataclass
class TrainingProblem:
    """What the ridge probes fit on: all training rows (GCV) or the fit split (validation selection)."""

    stats: GramStats
    problem: Standardised
    x_val: np.ndarray | None
    y_val: np.ndarray | None


def fit_statistics(config: AnalysisConfig, features: Features) -> GramStats:
    """The statistics of the rows the ridge probe fits on: the fit split's (accumulated in the extraction
    pass), plus the validation rows' under GCV."""
    f = features
    if config.ridge_fit_splits() == ("train",):
        return f.stats
    return f.stats.merge(GramStats.from_features(f.x_val, f.y_val, f.stats.num_classes))


def training_problem(config: AnalysisConfig, features: Features) -> TrainingProblem:
    """GCV needs no held-out rows, so it fits on train + validation; `val` keeps the split."""
    f = features
    stats = fit_statistics(config, features)
    if config.ridge_fit_splits() == ("train",):
        return TrainingProblem(stats, stats.standardised(), f.x_val, f.y_val)
    c = f.stats.num_classes
    if statistics_suffice(stats):
        return TrainingProblem(stats, stats.standardised(), None, None)
    x = np.concatenate([f.x_train, f.x_val]).astype(np.float64)
    y = np.concatenate([f.y_train, f.y_val]).astype(np.int64)
    return TrainingProblem(GramStats.from_features(x, y, c), standardised_from_rows(x, y, c), None, None)


def retrieval_scorer(config: AnalysisConfig, features: Features, device: str) -> RetrievalScorer:
    """Retrieval (`probing.retrieval`): the test rows query a corpus of every train row (fit and validation
    splits); relevant = same label, or the explicit pairs' qrels when the dataset has them."""
    f = features
    if f.x_train is None:
        raise ValueError("retrieval needs the train features stored (needs_train_features)")
    corpus = np.concatenate([np.asarray(f.x_train), np.asarray(f.x_val)])
    labels = np.concatenate([f.y_train, f.y_val])
    return RetrievalScorer(corpus, labels, np.asarray(f.x_test), f.y_test, config.score_metric, config.similarity,
                           device, qrels=f.qrels)


class SubsetProber:
    """Scores subsets by the configured task: probes of the configured kind (classification), every
    result with per-sample test correctness and its training-side selection score; or exact search
    (retrieval), every result with per-query scores and no selection."""

    def __init__(self, config: AnalysisConfig, features: Features, train: TrainingProblem, device: str) -> None:
        self.config, self.features, self.device = config, features, device
        self.retrieval = retrieval_scorer(config, features, device) if config.task == "retrieval" else None
        self.selection: str | None = (
            None if self.retrieval is not None else config.lambda_select if config.probe == "ridge" else "val")
        self.ridge = (
            RidgeProber(train.problem, train.x_val, train.y_val, features.x_test, features.y_test,
                        device=device, select=config.lambda_select)
            if config.probe == "ridge" and self.retrieval is None else None
        )

    def __call__(
        self, subsets: list[np.ndarray], tracker: Tracker, progress: Callable[[float], None]
    ) -> list[ProbeResult]:
        if self.retrieval is not None:
            return self._search(subsets, tracker, progress)
        return self._ridge(subsets, tracker, progress) if self.ridge is not None else self._logistic(
            subsets, tracker, progress)

    def _search(
        self, subsets: list[np.ndarray], tracker: Tracker, progress: Callable[[float], None]
    ) -> list[ProbeResult]:
        assert self.retrieval is not None
        out: list[ProbeResult] = []
        for s in subsets:
            tracker.check()
            out.append(self.retrieval.subset(s))
            progress(len(out) / len(subsets))
        return out

    def _ridge(
        self, subsets: list[np.ndarray], tracker: Tracker, progress: Callable[[float], None]
    ) -> list[ProbeResult]:
        """Same-size subsets (a fraction's seeds) are probed as one group: one λ choice per group."""
        assert self.ridge is not None
        out: list[ProbeResult] = []
        for group in same_size_runs(subsets):
            tracker.check()
            out.extend(self.ridge.probe_group(group))
            progress(len(out) / len(subsets))
        return out

    def _logistic(
        self, subsets: list[np.ndarray], tracker: Tracker, progress: Callable[[float], None]
    ) -> list[ProbeResult]:
        f, c = self.features, self.config
        if c.logistic_solver == "lbfgs":
            results = train_logistic_lbfgs(
                f.x_train, f.y_train, f.x_val, f.y_val, f.x_test, f.y_test, subsets, f.stats.num_classes,
                device=self.device, seed=c.seed, should_stop=tracker.should_stop, progress=progress)
        else:
            results = train_logistic_grid(
                f.x_train, f.y_train, f.x_val, f.y_val, f.x_test, f.y_test, subsets, f.stats.num_classes,
                epochs=c.logistic_epochs, batch_size=c.logistic_batch_size, lr=c.logistic_lr,
                weight_decay=c.logistic_weight_decay, device=self.device, seed=c.seed,
                should_stop=tracker.should_stop, progress=progress,
            )
        for r in results:
            r.score = r.val_accuracy
        return list(results)


def same_size_runs(subsets: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Consecutive subsets of equal size, in order."""
    runs: list[list[np.ndarray]] = []
    for s in subsets:
        if runs and len(runs[-1][0]) == len(s):
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs


@dataclass
class ProbeContext:
    """Everything the probing steps share; built once by `run_probes`."""

    config: AnalysisConfig
    features: Features
    train: TrainingProblem
    prober: SubsetProber
    gram_cka: GramCKA
    test_cka: FeatureCKA
    tracker: Tracker
    device: str

    @property
    def d(self) -> int:
        return self.features.d


def probe_context(config: AnalysisConfig, features: Features, device: str = "cpu",
                  tracker: Tracker | None = None) -> ProbeContext:
    """The training problem, the prober and both CKAs, built once for every probe of one analysis."""
    train = training_problem(config, features)
    return ProbeContext(
        config, features, train, SubsetProber(config, features, train, device),
        GramCKA(train.stats.centred_gram(), device=device),
        FeatureCKA(cka_rows(features.x_test, config.cka_protocol), device=device),
        tracker or Tracker(), device,
    )


def probe_random(
    ctx: ProbeContext, entries: list[tuple[float, int, int]], kind: str, span: tuple[float, float]
) -> Probed:
    """Probe `seeds` random subsets of each `(fraction, k, seeds)` entry, with their CKAs."""
    c, d, tracker = ctx.config, ctx.d, ctx.tracker
    jobs = [(f, k, s, draw_subset(d, k, s, c.seed, c.subsets)) for f, k, n in entries for s in range(n)]
    lo, hi = span
    results = ctx.prober([j[3] for j in jobs], tracker, lambda x: tracker.report("probe", lo + (hi - lo) * x, kind))
    out = Probed()
    debiased = c.cka == "debiased"
    for (fraction, k, seed, subset), r in zip(jobs, results, strict=True):
        out.points.append(CurvePoint(
            fraction=fraction, k=k, seed=seed, accuracy=r.accuracy, per_class_accuracy=r.per_class_accuracy.tolist(),
            metric=c.score_metric, cka=defined(ctx.gram_cka(subset)), lam=r.lam, kind=kind,
            selection=ctx.prober.selection, selection_score=r.score,
            cka_pair=defined(ctx.test_cka.subset_subset(k, seed, c.seed, debiased=debiased)),
            cka_debiased=defined(ctx.test_cka.part_whole(subset, debiased=True)) if debiased else None,
            query_gini=r.query_gini,
        ))
        if r.correct is not None:
            out.correct[k].append(r.correct)
        if r.lam_at_edge:
            out.edge_ks.add(k)
    return out


def probe_baselines(ctx: ProbeContext, entries: list[tuple[float, int, int]]) -> Probed:
    """PCA top-k, first k and random projections at every k of the grid, with the same ridge selection
    (classification) or the same search (retrieval)."""
    c, d, tr = ctx.config, ctx.d, ctx.train
    if ctx.prober.retrieval is not None:
        return search_baselines(ctx, ctx.prober.retrieval, entries)
    base = Baselines(tr.stats, tr.x_val, tr.y_val, ctx.features.x_test, ctx.features.y_test,
                     device=ctx.device, select=c.lambda_select)
    units = [(kind, f, k, n) for kind in c.baselines for f, k, n in entries]
    rank = base.pca_rank() if "pca" in c.baselines else d
    out = Probed()
    for i, (kind, fraction, k, seeds) in enumerate(units):
        ctx.tracker.check()
        if kind == "pca" and k > rank and any(p.kind == "pca" and p.k == rank for p in out.points):
            continue  # PCA is capped at the Gram's rank: that k was probed already
        runs = (
            [base.pca(k)] if kind == "pca"
            else [base.first_k(k)] if kind == "first_k"
            else [base.random_projection(k, s, c.seed) for s in range(seeds)]
        )
        for seed, r in enumerate(runs):
            out.points.append(CurvePoint(
                fraction=fraction, k=r.k, seed=seed, accuracy=r.accuracy,
                per_class_accuracy=r.per_class_accuracy.tolist(), cka=defined(r.cka), lam=r.lam, kind=kind,
                selection=c.lambda_select, selection_score=r.score, metric=c.score_metric,
            ))
            if r.lam_at_edge:
                out.edge_ks.add(r.k)
        ctx.tracker.report("probe", 0.7 + 0.3 * (i + 1) / len(units), f"baseline {kind} k={k}")
    return out


def search_baselines(ctx: ProbeContext, scorer: RetrievalScorer, entries: list[tuple[float, int, int]]) -> Probed:
    """Retrieval's baselines at every k of the grid, each a map `x ↦ Rᵀx` of queries and corpus: the first
    k neurons, the top-k principal axes of the corpus (uncentred, `retrieval.pca_axes`; no rank cap: at
    k = d a rotation), a seeded Gaussian projection per seed. CKA with the layer as for classification."""
    c, d = ctx.config, ctx.d
    gram = ctx.train.stats.centred_gram()
    axes = pca_axes(scorer.corpus) if "pca" in c.baselines else None
    units = [(kind, f, k, n) for kind in c.baselines for f, k, n in entries]
    out = Probed()
    for i, (kind, fraction, k, seeds) in enumerate(units):
        ctx.tracker.check()
        if kind == "pca":
            assert axes is not None
            maps = [axes[:, :k]]
        elif kind == "first_k":
            maps = [np.eye(d)[:, :k]]
        else:
            maps = [random_projection_matrix(d, k, s, c.seed) for s in range(seeds)]
        for seed, r in enumerate(maps):
            res = scorer.subset(np.arange(k)) if kind == "first_k" else scorer.projection(r)
            out.points.append(CurvePoint(
                fraction=fraction, k=k, seed=seed, accuracy=res.accuracy,
                per_class_accuracy=res.per_class_accuracy.tolist(), cka=defined(projection_cka(gram, r)),
                lam=None, kind=kind, selection=None, selection_score=None, metric=c.score_metric,
                query_gini=res.query_gini,
            ))
        ctx.tracker.report("probe", 0.7 + 0.3 * (i + 1) / len(units), f"baseline {kind} k={k}")
    return out


def defined(value: float) -> float | None:
    """An undefined CKA (NaN) is stored as absent, not as a number."""
    return None if np.isnan(value) else value
