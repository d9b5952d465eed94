"""`analyze`: from a config to a Report, stage by stage, with progress and cancellation hooks."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import timm
import torch

from redundancy.advice import recommend, summarize
from redundancy.cka import GramCKA
from redundancy.config import AnalysisConfig
from redundancy.datasets import ImageDataset, balanced_subset, load_dataset
from redundancy.datasets.base import ImageSplit, validation_split
from redundancy.errors import Cancelled, DatasetFormatError, InvalidConfigError
from redundancy.extraction import FEATURES_VERSION, Features, extract
from redundancy.hashing import hash_json
from redundancy.models import FeatureExtractor, LoadedModel, load_model
from redundancy.probes import RidgeProber, plan_subsets, sample_subset
from redundancy.report import (
    CurvePoint,
    DatasetInfo,
    Environment,
    ModelInfo,
    Report,
    SkippedFraction,
)
from redundancy.runtime import Runtime

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

    def report(self, stage: str, fraction: float, message: str = "") -> None:
        if self.progress is not None:
            start, weight = self._offsets[stage]
            self.progress(ProgressEvent(stage, fraction, min(1.0, start + weight * fraction), message))

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
    if config.probe != "ridge":
        raise InvalidConfigError(f"probe {config.probe!r} is not available yet; use 'ridge'", field="probe")

    with tracker.stage("load_model"):
        loaded = load_model(config.model.name, config.model.weights, seed=config.seed)
        extractor = FeatureExtractor(loaded.module, config.layer)
        transform, data_cfg = make_transform(loaded, config.image_size)

    with tracker.stage("load_data"):
        data = prepare_data(config, runtime)
        num_classes = len(data.dataset.classes)

    with tracker.stage("extract"):
        key = feature_key(config, loaded, data, data_cfg)
        path = runtime.cache_dir / f"{key}.npz" if runtime.cache_dir is not None else None
        cache_hit = path is not None and path.is_file()
        if cache_hit:
            assert path is not None
            features = Features.load(path)
        else:
            features = extract(
                extractor, transform, data.train, data.val, data.test, num_classes,
                device=device, batch_size=config.batch_size, num_workers=runtime.num_workers,
                progress=lambda f: tracker.report("extract", f), should_stop=should_stop,
            )
            if path is not None:
                features.save(path)

    with tracker.stage("probe"):
        curve, skipped = run_probes(config, features, device, tracker)

    with tracker.stage("advise"):
        classes = data.dataset.classes
        d = features.d
        recs = [recommend(curve, classes, d, delta, config.delta_mode, config.criterion) for delta in config.deltas]
        summary = summarize(curve)
        full = next(s for s in summary if s.k == d)

    return Report(
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
        skipped_fractions=[SkippedFraction(fraction=f, k=k, reason=r) for f, k, r in skipped],
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


def run_probes(
    config: AnalysisConfig, features: Features, device: str = "cpu", tracker: _Tracker | None = None
) -> tuple[list[CurvePoint], list[tuple[float, int, str]]]:
    """Ridge probe and part-versus-whole CKA for every (fraction, seed) of the plan."""
    tracker = tracker or _Tracker(None, None)
    d = features.d
    plan = plan_subsets(config.fractions, d, config.seeds)
    prober = RidgeProber(
        features.stats.standardised(), features.x_val, features.y_val, features.x_test, features.y_test,
        device=device,
    )
    cka = GramCKA(features.stats.centred_gram(), device=device)
    curve: list[CurvePoint] = []
    done = 0
    for fraction, k, seeds in plan.entries:
        for seed in range(seeds):
            tracker.check()
            subset = sample_subset(d, k, seed, config.seed)
            result = prober.probe(subset)
            curve.append(
                CurvePoint(
                    fraction=fraction, k=k, seed=seed, accuracy=result.accuracy,
                    per_class_accuracy=result.per_class_accuracy.tolist(), cka=cka(subset), lam=result.lam,
                )
            )
            done += 1
            tracker.report("probe", done / plan.num_probes, f"k={k} seed={seed}")
    return curve, plan.skipped
