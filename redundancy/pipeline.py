"""`analyze`: from a config to a Report, stage by stage, with progress and cancellation hooks."""

from __future__ import annotations

import platform
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import timm
import torch

from redundancy.advice import recommend, summarize, threshold
from redundancy.baselines import Baselines
from redundancy.cka import FeatureCKA, GramCKA
from redundancy.config import AnalysisConfig
from redundancy.datasets import ImageDataset, balanced_subset, load_dataset
from redundancy.datasets.base import ImageSplit, validation_split
from redundancy.deploy.head import model_facts
from redundancy.encoders import load_feature_source, uses_feature_source
from redundancy.errors import Cancelled, DatasetFormatError
from redundancy.extraction import (
    FEATURES_VERSION,
    Features,
    ImagesProgress,
    assemble_shards,
    cached_features,
    extract,
    extract_rows,
)
from redundancy.features_store import save_stats
from redundancy.hashing import hash_json
from redundancy.models import FeatureExtractor, LoadedModel, load_model
from redundancy.probes import ProbeResult, RidgeProber, plan_subsets, sample_subset
from redundancy.probes.logistic import train_logistic_grid
from redundancy.refine import bracket, refine, resolution_to_k
from redundancy.report import (
    CurvePoint,
    DatasetInfo,
    Environment,
    FractionSummary,
    ModelInfo,
    Report,
    SkippedFraction,
)
from redundancy.runtime import Runtime
from redundancy.stats import GramStats, Standardised, standardised_from_rows, statistics_suffice
from redundancy.uncertainty import PairedBootstrap, fraction_uncertainty

CODE_VERSION = "0.1.0"
STAGES: tuple[tuple[str, float], ...] = (
    ("load_model", 0.03),
    ("load_data", 0.02),
    ("extract", 0.65),
    ("probe", 0.28),
    ("advise", 0.02),
)


def stage_overall(stage: str, fraction: float) -> float:
    """Overall progress (0..1) at `fraction` of the way through `stage`, by the stages' weights."""
    start = sum(w for _, w in STAGES[: [n for n, _ in STAGES].index(stage)])
    return min(1.0, start + dict(STAGES)[stage] * fraction)


@dataclass
class ProgressEvent:
    stage: str
    stage_progress: float  # 0..1 within the stage
    overall: float  # 0..1 over the whole analysis
    message: str = ""
    images_done: int | None = None  # extraction only: images through the model so far, of images_total
    images_total: int | None = None


ProgressFn = Callable[[ProgressEvent], None]
StopFn = Callable[[], bool]


class _Tracker:
    def __init__(self, progress: ProgressFn | None, should_stop: StopFn | None) -> None:
        self.progress, self.should_stop = progress, should_stop
        self.timings: dict[str, float] = {}

    def check(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled("analysis cancelled")

    def report(self, stage: str, fraction: float, message: str = "", images: tuple[int, int] | None = None) -> None:
        if self.progress is not None:
            done, total = images if images is not None else (None, None)
            self.progress(ProgressEvent(stage, fraction, stage_overall(stage, fraction), message, done, total))

    def stage(self, name: str) -> _Stage:
        return _Stage(self, name)


class _Stage:
    def __init__(self, tracker: _Tracker, name: str) -> None:
        self.tracker, self.name = tracker, name

    def __enter__(self) -> _Stage:
        self.tracker.check()
        self.tracker.report(self.name, 0.0)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.tracker.timings[self.name] = round(time.perf_counter() - self.t0, 4)
        if exc_type is None:
            self.tracker.report(self.name, 1.0)


@dataclass
class PreparedData:
    dataset: ImageDataset
    train: ImageSplit
    val: ImageSplit
    test: ImageSplit


def prepare_data(config: AnalysisConfig, runtime: Runtime) -> PreparedData:
    """Load the dataset, apply the class-balanced caps, hold out the validation split."""
    ds = load_dataset(config.dataset.spec, runtime, config.dataset)
    train, test = ds.train, ds.test
    if config.dataset.max_train is not None:
        train = train.subset(balanced_subset(train.labels, config.dataset.max_train, config.seed))
    if config.dataset.max_test is not None:
        test = test.subset(balanced_subset(test.labels, config.dataset.max_test, config.seed))
    missing = sorted(set(range(len(ds.classes))) - set(np.unique(test.labels).tolist()))
    if missing:
        names = ", ".join(ds.classes[i] for i in missing[:5])
        raise DatasetFormatError(
            f"{len(missing)} class(es) have no test images ({names}); per-class accuracy would be undefined"
            + (" — raise max_test" if config.dataset.max_test is not None else ""),
            field="dataset.max_test" if config.dataset.max_test is not None else "dataset.spec",
        )
    fit_idx, val_idx = validation_split(train.labels, config.val_fraction, config.seed)
    if len(val_idx) == 0 or len(fit_idx) < 2:
        raise DatasetFormatError(
            f"{len(train)} train images are too few to hold out a validation split", field="dataset.max_train"
        )
    return PreparedData(dataset=ds, train=train.subset(fit_idx), val=train.subset(val_idx), test=test)


def make_transform(loaded: LoadedModel, image_size: int | None) -> tuple[object, dict]:
    """timm's own eval transform for the model, optionally at another input size."""
    cfg = dict(loaded.data_config)
    if image_size is not None:
        cfg["input_size"] = (3, image_size, image_size)
    transform = timm.data.create_transform(**cfg, is_training=False)
    return transform, cfg


def feature_key(config: AnalysisConfig, loaded: LoadedModel, data: PreparedData, data_cfg: dict) -> str:
    return hash_json(
        {
            "model": loaded.name,
            "weights": loaded.weights_identity,
            "layer": config.layer,
            "train": data.train.identity,
            "val": data.val.identity,
            "test": data.test.identity,
            "transform": {k: list(v) if isinstance(v, tuple) else v for k, v in data_cfg.items()},
            "features_version": FEATURES_VERSION,
            "feature_dtype": config.feature_dtype,
        }
    )


def needs_train_features(config: AnalysisConfig) -> bool:
    """Whether the train split's samples are stored, not only its statistics: the logistic probe
    trains on them, and GCV refits on train + validation rows (`training_problem`)."""
    return config.probe == "logistic" or config.lambda_select != "val"


@dataclass
class Prepared:
    """The model and the data of one analysis, ready to extract: what every shard and the reduce share."""

    loaded: LoadedModel
    extractor: FeatureExtractor
    transform: object
    data_cfg: dict
    data: PreparedData
    facts: tuple[str, dict] | None = None  # the backbone's sha256 and data config, for heads (ridge only)

    @property
    def num_classes(self) -> int:
        return len(self.data.dataset.classes)

    @property
    def splits(self) -> tuple[ImageSplit, ImageSplit, ImageSplit]:
        return self.data.train, self.data.val, self.data.test

    @property
    def total_rows(self) -> int:
        """Images through the model in one extraction: train, val and test laid end to end."""
        return sum(map(len, self.splits))

    @property
    def labels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        train, val, test = self.splits
        return train.labels, val.labels, test.labels


def prepare(config: AnalysisConfig, runtime: Runtime, tracker: _Tracker | None = None) -> Prepared:
    """The `load_model` and `load_data` stages."""
    tracker = tracker or _Tracker(None, None)
    # --- issue 19: no timm model: precomputed vectors (`embeddings:`) or a Hugging Face encoder (`hf:`).
    # The source stands in for both the loaded model and the layer extractor; no transform, no heads.
    if uses_feature_source(config):
        with tracker.stage("load_model"):
            source = load_feature_source(config, runtime)
        with tracker.stage("load_data"):
            data = prepare_data(config, runtime)
        return Prepared(source, source, None, source.data_config, data, None)  # type: ignore[arg-type]
    # --- end issue 19
    with tracker.stage("load_model"):
        loaded = load_model(config.model.name, config.model.weights, seed=config.seed)
        extractor = FeatureExtractor(loaded.module, config.layer)
        transform, data_cfg = make_transform(loaded, config.image_size)
        facts = model_facts(loaded, config.image_size) if config.probe == "ridge" else None
    with tracker.stage("load_data"):
        data = prepare_data(config, runtime)
    return Prepared(loaded, extractor, transform, data_cfg, data, facts)


def analyze(
    config: AnalysisConfig,
    runtime: Runtime | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Report:
    """Run one analysis. Raises a RedundancyError subclass on bad input, Cancelled when stopped.

    The composition of `prepare`, one extraction over every row, and `report_from_features`; a
    sharded run (`extract_shard` on row ranges, then `analyze_from_shards`) is the same code."""
    runtime = runtime or Runtime()
    tracker = _Tracker(progress, should_stop)
    device = runtime.resolve_device()
    prep = prepare(config, runtime, tracker)

    with tracker.stage("extract"):
        keep_train = needs_train_features(config)
        features, cache_hit = cached_features(
            runtime.cache_dir, runtime.work_dir, feature_key(config, prep.loaded, prep.data, prep.data_cfg),
            keep_train,
            lambda store: extract(
                prep.extractor, prep.transform, *prep.splits, prep.num_classes, store,
                device=device, batch_size=config.batch_size, num_workers=runtime.num_workers,
                feature_dtype=config.feature_dtype, keep_train=keep_train, should_stop=should_stop,
                progress=lambda done, total: tracker.report("extract", done / total, images=(done, total)),
            ),
        )
    return report_from_features(config, prep, features, device, tracker, cache_hit)


def extract_shard(
    config: AnalysisConfig,
    prep: Prepared,
    rows: tuple[int, int],
    store: Path,
    device: str,
    runtime: Runtime,
    progress: ImagesProgress | None = None,
    should_stop: StopFn | None = None,
) -> None:
    """One shard of a sharded analysis: the rows `[start, stop)` of `prep.splits` laid end to end,
    written to `store` as `stats.npz` (their additive train statistics) plus their slices of the
    stored features. `progress(done, total)` counts this shard's images."""
    stats = extract_rows(
        prep.extractor, prep.transform, prep.splits, prep.num_classes, store, rows, device=device,
        batch_size=config.batch_size, num_workers=runtime.num_workers, feature_dtype=config.feature_dtype,
        keep_train=needs_train_features(config), progress=progress, should_stop=should_stop,
    )
    save_stats(stats, store / "stats.npz")


def analyze_from_shards(
    config: AnalysisConfig,
    runtime: Runtime,
    shards: list[Path],
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Report:
    """The reduce of a sharded analysis: sum the shards' statistics, join their feature slices (in
    row order) and run the probes as `analyze` does."""
    tracker = _Tracker(progress, should_stop)
    device = runtime.resolve_device()
    prep = prepare(config, runtime, tracker)
    with tracker.stage("extract"):
        runtime.work_dir.mkdir(parents=True, exist_ok=True)
        store = Path(tempfile.mkdtemp(prefix=".joined.", dir=runtime.work_dir))
        try:
            features = assemble_shards(shards, store, prep.labels, prep.extractor.pooling, config.feature_dtype,
                                       needs_train_features(config))
        finally:  # the memory maps keep the files readable; the space is freed when they are dropped
            shutil.rmtree(store, ignore_errors=True)
    return report_from_features(config, prep, features, device, tracker, False)


def report_from_features(
    config: AnalysisConfig, prep: Prepared, features: Features, device: str, tracker: _Tracker, cache_hit: bool
) -> Report:
    """The `probe` and `advise` stages, and the report."""
    loaded, extractor, data, data_cfg = prep.loaded, prep.extractor, prep.data, prep.data_cfg
    with tracker.stage("probe"):
        run = run_probes(config, features, device, tracker)
        curve = run.curve

    with tracker.stage("advise"):
        classes = data.dataset.classes
        d = features.d
        recs = [
            recommend(curve, classes, d, delta, config.delta_mode, config.criterion, run.intervals, run.paired)
            for delta in config.deltas
        ]
        summary = summarize(curve, intervals=run.intervals)
        full = next(s for s in summary if s.k == d)
        baselines = [b for kind in config.baselines for b in summarize(curve, kinds=(kind,))]

    report = Report(
        warnings=_warnings(config, loaded, features, run, full.accuracy_mean, summary),
        config=config,
        model=ModelInfo(
            name=loaded.name,
            weights_source=loaded.weights_source,
            weights_identity=loaded.weights_identity,
            weights_random=loaded.weights_random,
            layer=extractor.layer,
            layer_pooling=features.pooling,
            d=d,
            input_size=list(data_cfg["input_size"]),
        ),
        dataset=DatasetInfo(
            spec=config.dataset.spec,
            classes=classes,
            sizes={"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        ),
        full_accuracy=full.accuracy_mean,
        curve=curve,
        summary=summary,
        baselines=baselines,
        probe=config.probe,
        skipped_fractions=[SkippedFraction(fraction=f, k=k, reason=r) for f, k, r in run.skipped],
        recommendations=recs,
        timings=tracker.timings,
        environment=Environment(
            device=device,
            amp=device.startswith("cuda"),
            torch=torch.__version__,
            timm=timm.__version__,
            numpy=np.__version__,
            python=platform.python_version(),
            code_version=CODE_VERSION,
            feature_cache_hit=cache_hit,
        ),
    )
    # not serialised: the rows the probe was fitted on, for later heads (`redundancy.deploy.save_stats`)
    report._stats = run.train_stats
    report._model_facts = prep.facts
    return report


def _warnings(
    config: AnalysisConfig, loaded: LoadedModel, features: Features, run: ProbeRun, full_accuracy: float,
    summary: list[FractionSummary],
) -> list[str]:
    """What a reader of the numbers should know: random weights, too little data for the width, a λ
    at the edge of its grid, subsets above the full layer."""
    out = []
    if loaded.weights_random:
        out.append("the weights were random (a test setting): these numbers say nothing about a trained model")
    d, c, n_val = features.d, features.stats.num_classes, len(features.y_val)
    by_val = config.probe == "logistic" or config.lambda_select == "val"
    n = run.n_train if config.probe == "ridge" else features.stats.n
    if n < d:
        out.append(f"{n} training rows for {d} neurons: the full-layer probe can overfit, which moves every ratio "
                   "to the full layer")
    if by_val and n_val < 5 * c:
        out.append(f"only {n_val} validation images for {c} classes: the selection on validation is noisy")
    if run.edge_ks:
        out.append(f"the GCV-chosen λ sat at the edge of its grid for k = {', '.join(map(str, run.edge_ks[:8]))}"
                   f"{' …' if len(run.edge_ks) > 8 else ''}: GCV was still falling there")
    better = [s for s in summary if s.k < d and s.accuracy_mean > full_accuracy + 0.01]
    if better:
        out.append(
            f"subsets beat the full layer by more than 1 point (e.g. k = {better[0].k}: "
            f"{better[0].accuracy_mean:.4f} vs {full_accuracy:.4f}); recommendations are relative to a noisy baseline"
        )
    return out


@dataclass
class ProbeRun:
    curve: list[CurvePoint]
    skipped: list[tuple[float, int, str]]
    intervals: dict[int, tuple[float, float]]  # bootstrap CI of the random subsets' mean accuracy, by k
    paired: PairedBootstrap | None = None  # per-sample correctness by k, for the paired margin
    n_train: int = 0  # rows the ridge probe was fitted on
    train_stats: GramStats | None = None  # the statistics of exactly those rows (what a head is refitted from)
    edge_ks: list[int] = field(default_factory=list)  # subset sizes whose GCV λ sat at the grid's edge


@dataclass
class _Probed:
    """Curve points and the random subsets' per-sample test correctness, by k."""

    points: list[CurvePoint] = field(default_factory=list)
    correct: dict[int, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))
    edge_ks: set[int] = field(default_factory=set)

    def extend(self, other: _Probed) -> None:
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


def training_problem(config: AnalysisConfig, features: Features) -> TrainingProblem:
    """GCV needs no held-out rows, so it fits on train + validation; `val` keeps the split."""
    f = features
    if config.ridge_fit_splits() == ("train",):
        return TrainingProblem(f.stats, f.stats.standardised(), f.x_val, f.y_val)
    c = f.stats.num_classes
    stats = f.stats.merge(GramStats.from_features(f.x_val, f.y_val, c))  # the fit split's pass is reused
    if statistics_suffice(stats):
        return TrainingProblem(stats, stats.standardised(), None, None)
    x = np.concatenate([f.x_train, f.x_val]).astype(np.float64)
    y = np.concatenate([f.y_train, f.y_val]).astype(np.int64)
    return TrainingProblem(GramStats.from_features(x, y, c), standardised_from_rows(x, y, c), None, None)


class _SubsetProber:
    """Probes subsets with the configured kind; every result carries per-sample test correctness and
    its training-side selection score."""

    def __init__(self, config: AnalysisConfig, features: Features, train: TrainingProblem, device: str) -> None:
        self.config, self.features, self.device = config, features, device
        self.selection = config.lambda_select if config.probe == "ridge" else "val"
        self.ridge = (
            RidgeProber(train.problem, train.x_val, train.y_val, features.x_test, features.y_test,
                        device=device, select=config.lambda_select)
            if config.probe == "ridge" else None
        )

    def __call__(
        self, subsets: list[np.ndarray], tracker: _Tracker, progress: Callable[[float], None]
    ) -> list[ProbeResult]:
        return self._ridge(subsets, tracker, progress) if self.ridge is not None else self._logistic(
            subsets, tracker, progress)

    def _ridge(
        self, subsets: list[np.ndarray], tracker: _Tracker, progress: Callable[[float], None]
    ) -> list[ProbeResult]:
        """Same-size subsets (a fraction's seeds) are probed as one group: one λ choice per group."""
        assert self.ridge is not None
        out: list[ProbeResult] = []
        for group in _same_size_runs(subsets):
            tracker.check()
            out.extend(self.ridge.probe_group(group))
            progress(len(out) / len(subsets))
        return out

    def _logistic(
        self, subsets: list[np.ndarray], tracker: _Tracker, progress: Callable[[float], None]
    ) -> list[ProbeResult]:
        f, c = self.features, self.config
        results = train_logistic_grid(
            f.x_train, f.y_train, f.x_val, f.y_val, f.x_test, f.y_test, subsets, f.stats.num_classes,
            epochs=c.logistic_epochs, batch_size=c.logistic_batch_size, lr=c.logistic_lr,
            weight_decay=c.logistic_weight_decay, device=self.device, seed=c.seed,
            should_stop=tracker.should_stop, progress=progress,
        )
        for r in results:
            r.score = r.val_accuracy
        return list(results)


def _same_size_runs(subsets: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Consecutive subsets of equal size, in order."""
    runs: list[list[np.ndarray]] = []
    for s in subsets:
        if runs and len(runs[-1][0]) == len(s):
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs


@dataclass
class _Context:
    """Everything the probing steps share; built once by `run_probes`."""

    config: AnalysisConfig
    features: Features
    train: TrainingProblem
    prober: _SubsetProber
    gram_cka: GramCKA
    test_cka: FeatureCKA
    tracker: _Tracker
    device: str

    @property
    def d(self) -> int:
        return self.features.d


def run_probes(
    config: AnalysisConfig, features: Features, device: str = "cpu", tracker: _Tracker | None = None
) -> ProbeRun:
    """Probe every (fraction, seed) of the grid with part-vs-whole and subset-vs-subset CKA; then, as
    configured, refine f* by bisection, probe the baselines, and bootstrap the test set."""
    tracker = tracker or _Tracker(None, None)
    train = training_problem(config, features)
    ctx = _Context(
        config, features, train, _SubsetProber(config, features, train, device),
        GramCKA(train.stats.centred_gram(), device=device), FeatureCKA(features.x_test, device=device),
        tracker, device,
    )
    plan = plan_subsets(config.fractions, features.d, config.seeds)
    probed = probe_random(ctx, plan.entries, "random", (0.0, 0.6))
    if config.refine_resolution is not None:
        probed.extend(_Refinement(ctx, probed.points).run())
    tracker.report("probe", 0.7, "baselines")
    baselines = probe_baselines(ctx, plan.entries) if config.baselines else _Probed()
    correct = {k: np.stack(v) for k, v in probed.correct.items()}
    return ProbeRun(
        curve=probed.points + baselines.points,
        skipped=plan.skipped,
        intervals=bootstrap_intervals(config, probed.correct),
        paired=PairedBootstrap(correct, features.d, config.bootstrap, config.ci_level, config.seed)
        if config.bootstrap > 0 else None,
        n_train=train.problem.n,
        train_stats=train.stats,
        edge_ks=sorted(probed.edge_ks | baselines.edge_ks),
    )


def probe_random(
    ctx: _Context, entries: list[tuple[float, int, int]], kind: str, span: tuple[float, float]
) -> _Probed:
    """Probe `seeds` random subsets of each `(fraction, k, seeds)` entry, with their CKAs."""
    c, d, tracker = ctx.config, ctx.d, ctx.tracker
    jobs = [(f, k, s, sample_subset(d, k, s, c.seed)) for f, k, n in entries for s in range(n)]
    lo, hi = span
    results = ctx.prober([j[3] for j in jobs], tracker, lambda x: tracker.report("probe", lo + (hi - lo) * x, kind))
    out = _Probed()
    debiased = c.cka == "debiased"
    for (fraction, k, seed, subset), r in zip(jobs, results, strict=True):
        out.points.append(CurvePoint(
            fraction=fraction, k=k, seed=seed, accuracy=r.accuracy, per_class_accuracy=r.per_class_accuracy.tolist(),
            cka=_defined(ctx.gram_cka(subset)), lam=r.lam, kind=kind, selection=ctx.prober.selection,
            selection_score=r.score,
            cka_pair=_defined(ctx.test_cka.subset_subset(k, seed, c.seed, debiased=debiased)),
            cka_debiased=_defined(ctx.test_cka.part_whole(subset, debiased=True)) if debiased else None,
        ))
        if r.correct is not None:
            out.correct[k].append(r.correct)
        if r.lam_at_edge:
            out.edge_ks.add(k)
    return out


def probe_baselines(ctx: _Context, entries: list[tuple[float, int, int]]) -> _Probed:
    """PCA top-k, first k and random projections at every k of the grid, with the same ridge selection."""
    c, d, tr = ctx.config, ctx.d, ctx.train
    base = Baselines(tr.stats, tr.x_val, tr.y_val, ctx.features.x_test, ctx.features.y_test,
                     device=ctx.device, select=c.lambda_select)
    units = [(kind, f, k, n) for kind in c.baselines for f, k, n in entries]
    rank = base.pca_rank() if "pca" in c.baselines else d
    out = _Probed()
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
                per_class_accuracy=r.per_class_accuracy.tolist(), cka=_defined(r.cka), lam=r.lam, kind=kind,
                selection=c.lambda_select, selection_score=r.score,
            ))
            if r.lam_at_edge:
                out.edge_ks.add(r.k)
        ctx.tracker.report("probe", 0.7 + 0.3 * (i + 1) / len(units), f"baseline {kind} k={k}")
    return out


def bootstrap_intervals(config: AnalysisConfig, correct: dict[int, list[np.ndarray]]) -> dict[int, tuple[float, float]]:
    """The percentile bootstrap interval of each k's seed-mean accuracy over test images."""
    intervals: dict[int, tuple[float, float]] = {}
    if config.bootstrap > 0:
        for k, arrays in correct.items():
            accs = [float(a.mean()) for a in arrays]
            u = fraction_uncertainty(accs, np.stack(arrays), config.bootstrap, config.ci_level, config.seed)
            if u.ci_low is not None and u.ci_high is not None:
                intervals[k] = (u.ci_low, u.ci_high)
    return intervals


def _defined(value: float) -> float | None:
    """An undefined CKA (NaN) is stored as absent, not as a number."""
    return None if np.isnan(value) else value


class _Refinement:
    """For each δ, bisect over k between the grid's last failing and first passing subset size; the
    new probes are kept in `self.found`, the grid's curve is not changed."""

    def __init__(self, ctx: _Context, grid: list[CurvePoint]) -> None:
        self.ctx, self.grid, self.found = ctx, grid, _Probed()

    def run(self) -> _Probed:
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
