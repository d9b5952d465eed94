"""`analyze`: from a config to a Report, stage by stage, with progress and cancellation hooks."""

from __future__ import annotations

import platform
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import timm
import torch

from redundancy.advice import recommend, summarize, threshold
from redundancy.baselines import Baselines
from redundancy.cka import FeatureCKA, GramCKA
from redundancy.config import AnalysisConfig
from redundancy.datasets import ImageDataset, balanced_subset, load_dataset
from redundancy.datasets.base import ImageSplit, validation_split
from redundancy.errors import Cancelled, DatasetFormatError
from redundancy.extraction import FEATURES_VERSION, Features, cached_features, extract
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
from redundancy.uncertainty import fraction_uncertainty

CODE_VERSION = "0.1.0"
STAGES: tuple[tuple[str, float], ...] = (
    ("load_model", 0.03),
    ("load_data", 0.02),
    ("extract", 0.65),
    ("probe", 0.28),
    ("advise", 0.02),
)


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
        self._offsets, acc = {}, 0.0
        for name, weight in STAGES:
            self._offsets[name] = (acc, weight)
            acc += weight

    def check(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled("analysis cancelled")

    def report(self, stage: str, fraction: float, message: str = "", images: tuple[int, int] | None = None) -> None:
        if self.progress is not None:
            start, weight = self._offsets[stage]
            done, total = images if images is not None else (None, None)
            self.progress(ProgressEvent(stage, fraction, min(1.0, start + weight * fraction), message, done, total))

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
    ds = load_dataset(config.dataset.spec, runtime)
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


def analyze(
    config: AnalysisConfig,
    runtime: Runtime | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Report:
    """Run one analysis. Raises a RedundancyError subclass on bad input, Cancelled when stopped."""
    runtime = runtime or Runtime()
    tracker = _Tracker(progress, should_stop)
    device = runtime.resolve_device()

    with tracker.stage("load_model"):
        loaded = load_model(config.model.name, config.model.weights, seed=config.seed)
        extractor = FeatureExtractor(loaded.module, config.layer)
        transform, data_cfg = make_transform(loaded, config.image_size)

    with tracker.stage("load_data"):
        data = prepare_data(config, runtime)
        num_classes = len(data.dataset.classes)

    with tracker.stage("extract"):
        keep_train = config.probe == "logistic"
        features, cache_hit = cached_features(
            runtime.cache_dir, runtime.work_dir, feature_key(config, loaded, data, data_cfg), keep_train,
            lambda store: extract(
                extractor, transform, data.train, data.val, data.test, num_classes, store,
                device=device, batch_size=config.batch_size, num_workers=runtime.num_workers,
                feature_dtype=config.feature_dtype, keep_train=keep_train, should_stop=should_stop,
                progress=lambda done, total: tracker.report("extract", done / total, images=(done, total)),
            ),
        )

    with tracker.stage("probe"):
        run = run_probes(config, features, device, tracker)
        curve = run.curve

    with tracker.stage("advise"):
        classes = data.dataset.classes
        d = features.d
        recs = [
            recommend(curve, classes, d, delta, config.delta_mode, config.criterion, run.intervals)
            for delta in config.deltas
        ]
        summary = summarize(curve, intervals=run.intervals)
        full = next(s for s in summary if s.k == d)
        baselines = [b for kind in config.baselines for b in summarize(curve, kinds=(kind,))]

    return Report(
        warnings=_warnings(loaded, features, data, full.accuracy_mean, summary),
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


def _warnings(
    loaded: LoadedModel, features: Features, data: PreparedData, full_accuracy: float,
    summary: list[FractionSummary],
) -> list[str]:
    """What a reader of the numbers should know: random weights, too little data for the width."""
    out = []
    if loaded.weights_random:
        out.append("the weights were random (a test setting): these numbers say nothing about a trained model")
    n, d, c = features.stats.n, features.d, len(data.dataset.classes)
    if n < d:
        out.append(
            f"{n} training rows for {d} neurons: the full-layer probe can overfit and the λ choice on "
            f"{len(features.y_val)} validation images is noisy, which moves every ratio to the full layer"
        )
    if len(features.y_val) < 5 * c:
        out.append(f"only {len(features.y_val)} validation images for {c} classes: the λ choice is noisy")
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


class _SubsetProber:
    """Probes subsets with the configured kind; every result carries per-sample test correctness."""

    def __init__(self, config: AnalysisConfig, features: Features, device: str) -> None:
        self.config, self.features, self.device = config, features, device
        self.ridge = (
            RidgeProber(
                features.stats.standardised(), features.x_val, features.y_val, features.x_test,
                features.y_test, device=device,
            )
            if config.probe == "ridge"
            else None
        )

    def __call__(
        self, subsets: list[np.ndarray], tracker: _Tracker, progress: Callable[[float], None]
    ) -> list[ProbeResult]:
        if self.ridge is not None:
            out = []
            for i, subset in enumerate(subsets):
                tracker.check()
                out.append(self.ridge.probe(subset))
                progress((i + 1) / len(subsets))
            return out
        f, c = self.features, self.config
        return list(
            train_logistic_grid(
                f.x_train, f.y_train, f.x_val, f.y_val, f.x_test, f.y_test, subsets, f.stats.num_classes,
                epochs=c.logistic_epochs, batch_size=c.logistic_batch_size, lr=c.logistic_lr,
                weight_decay=c.logistic_weight_decay, device=self.device, seed=c.seed,
                should_stop=tracker.should_stop, progress=progress,
            )
        )


def run_probes(
    config: AnalysisConfig, features: Features, device: str = "cpu", tracker: _Tracker | None = None
) -> ProbeRun:
    """Probe every (fraction, seed) of the grid with part-vs-whole and subset-vs-subset CKA; then, as
    configured, refine f* by bisection, probe the baselines, and bootstrap the test set."""
    tracker = tracker or _Tracker(None, None)
    d = features.d
    plan = plan_subsets(config.fractions, d, config.seeds)
    prober = _SubsetProber(config, features, device)
    gram_cka = GramCKA(features.stats.centred_gram(), device=device)
    test_cka = FeatureCKA(features.x_test, device=device)
    debiased = config.cka == "debiased"
    curve: list[CurvePoint] = []
    correct: dict[int, list[np.ndarray]] = defaultdict(list)

    def probe_random(entries: list[tuple[float, int, int]], kind: str, span: tuple[float, float]) -> None:
        jobs = [(f, k, s, sample_subset(d, k, s, config.seed)) for f, k, n in entries for s in range(n)]
        lo, hi = span
        results = prober(
            [j[3] for j in jobs], tracker, lambda x: tracker.report("probe", lo + (hi - lo) * x, kind)
        )
        for (fraction, k, seed, subset), r in zip(jobs, results, strict=True):
            curve.append(
                CurvePoint(
                    fraction=fraction, k=k, seed=seed, accuracy=r.accuracy,
                    per_class_accuracy=r.per_class_accuracy.tolist(), cka=gram_cka(subset), lam=r.lam,
                    kind=kind, cka_pair=_defined(test_cka.subset_subset(k, seed, config.seed, debiased=debiased)),
                    cka_debiased=_defined(test_cka.part_whole(subset, debiased=True)) if debiased else None,
                )
            )
            if r.correct is not None:
                correct[k].append(r.correct)

    probe_random(plan.entries, "random", (0.0, 0.6))

    if config.refine_resolution is not None:
        _refine(config, d, curve, lambda k: probe_random([(k / d, k, config.seeds)], "refinement", (0.6, 0.6)),
                tracker)
    tracker.report("probe", 0.7, "baselines")

    if config.baselines:
        base = Baselines(features.stats, features.x_val, features.y_val, features.x_test, features.y_test,
                         device=device)
        units = [(kind, f, k, n) for kind in config.baselines for f, k, n in plan.entries]
        rank = base.pca_rank() if "pca" in config.baselines else d
        for i, (kind, fraction, k, seeds) in enumerate(units):
            tracker.check()
            if kind == "pca" and k > rank and any(p.kind == "pca" and p.k == rank for p in curve):
                continue  # PCA is capped at the Gram's rank: that k was probed already
            runs = (
                [base.pca(k)] if kind == "pca"
                else [base.first_k(k)] if kind == "first_k"
                else [base.random_projection(k, s, config.seed) for s in range(seeds)]
            )
            for seed, r in enumerate(runs):
                curve.append(
                    CurvePoint(
                        fraction=fraction, k=r.k, seed=seed, accuracy=r.accuracy,
                        per_class_accuracy=r.per_class_accuracy.tolist(), cka=r.cka, lam=r.lam, kind=kind,
                    )
                )
            tracker.report("probe", 0.7 + 0.3 * (i + 1) / len(units), f"baseline {kind} k={k}")

    intervals: dict[int, tuple[float, float]] = {}
    if config.bootstrap > 0:
        for k, arrays in correct.items():
            accs = [float(a.mean()) for a in arrays]
            u = fraction_uncertainty(accs, np.stack(arrays), config.bootstrap, config.ci_level, config.seed)
            if u.ci_low is not None and u.ci_high is not None:
                intervals[k] = (u.ci_low, u.ci_high)
    return ProbeRun(curve=curve, skipped=plan.skipped, intervals=intervals)


def _defined(value: float) -> float | None:
    """An undefined CKA (NaN) is stored as absent, not as a number."""
    return None if np.isnan(value) else value


def _refine(
    config: AnalysisConfig, d: int, curve: list[CurvePoint], probe_k: Callable[[int], None], tracker: _Tracker
) -> None:
    """For each δ, bisect over k between the grid's last failing and first passing subset size."""
    resolution = resolution_to_k(config.refine_resolution or 0.0, d)
    probed: set[int] = set()

    def stat(k: int) -> float:
        s = next(x for x in summarize(curve) if x.k == k)
        return s.accuracy_mean if config.criterion == "mean" else s.accuracy_min

    for delta in config.deltas:
        summary = summarize(curve)
        full = next(x for x in summary if x.k == d).accuracy_mean
        bar = threshold(full, delta, config.delta_mode)
        br = bracket([(x.k, stat(x.k)) for x in summary], bar)
        if br is None:
            continue

        def probe_fn(k: int) -> float:
            if k not in probed and all(p.k != k for p in curve):
                probe_k(k)
                probed.add(k)
            return stat(k)

        refine(probe_fn, br[0], br[1], bar, resolution, should_stop=tracker.should_stop)
