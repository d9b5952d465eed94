"""`analyze`: from a config to a Report, stage by stage, with progress and cancellation hooks.

Orchestration only: prepare the model and the data (`prepare`), extract once (`sources/`), probe
(`run_probes`: the grid and baselines by `probing.engine`, the refinement of f* by `advice.refine`,
the bootstrap by `advice.uncertainty`), advise (`advice.recommend`) and assemble the `Report`.
`run_analysis` returns it with the statistics a head is fitted from (`Analysis`)."""

from __future__ import annotations

import dataclasses
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import timm
import torch

from redundancy import __version__
from redundancy.advice.recommend import summarize
from redundancy.advice.refine import Refinement
from redundancy.advice.uncertainty import PairedBootstrap, bootstrap_intervals
from redundancy.config import AnalysisConfig, data_config_as_json
from redundancy.deploy.head import model_facts
from redundancy.errors import DatasetFormatError, InvalidConfigError
from redundancy.hashing import hash_json
from redundancy.preflight import layer_memory_reason
from redundancy.probing import plan_subsets
from redundancy.probing.engine import (
    Probed,
    fit_statistics,
    probe_baselines,
    probe_context,
    probe_random,
    training_problem,
)
from redundancy.probing.retrieval import DECILE_NAMES
from redundancy.progress import ImagesProgressFn, ProgressFn, StopFn, Tracker
from redundancy.quantise import measure_int8
from redundancy.report import (
    CurvePoint,
    DatasetInfo,
    Environment,
    FractionSummary,
    LayerAnswer,
    LayerResult,
    ModelInfo,
    QuantisedScore,
    Recommendation,
    Report,
    SkippedFraction,
)
from redundancy.runtime import Runtime
from redundancy.sources.datasets import ImageDataset, balanced_subset, load_dataset
from redundancy.sources.datasets.base import ImageSplit, validation_split
from redundancy.sources.encoders import load_feature_source, uses_feature_source
from redundancy.sources.extraction import (
    FEATURES_VERSION,
    Features,
    assemble_shards,
    cached_features,
    extract,
    extract_rows,
)
from redundancy.sources.features_store import save_stats
from redundancy.sources.models import FeatureExtractor, LoadedModel, load_model
from redundancy.sources.models.cost import layer_costs
from redundancy.sources.models.layers import PENULTIMATE, default_sweep, intermediates_index
from redundancy.sources.stats import GramStats
from redundancy.sweep import LayerCurve, across_layers, choose_reference, full_selection
from redundancy.verdict import advise


@dataclass
class PreparedData:
    dataset: ImageDataset
    train: ImageSplit
    val: ImageSplit
    test: ImageSplit
    qrels: np.ndarray | None = None  # explicit pairs: (query = test row, corpus position in train ++ val)


def prepare_data(config: AnalysisConfig, runtime: Runtime) -> PreparedData:
    """Load the dataset, apply the class-balanced caps, hold out the validation split."""
    ds = load_dataset(config.dataset.spec, runtime, config.dataset)
    if ds.qrels is not None:
        return prepare_pairs(config, ds)
    train, test = ds.train, ds.test
    if config.dataset.max_train is not None:
        train = train.subset(balanced_subset(train.labels, config.dataset.max_train, config.seed))
    if config.dataset.max_test is not None:
        test = test.subset(balanced_subset(test.labels, config.dataset.max_test, config.seed))
    missing = sorted(set(range(len(ds.classes))) - set(np.unique(test.labels).tolist()))
    if missing and config.task == "classification":  # retrieval's fairness is per query decile, not per class
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


def prepare_pairs(config: AnalysisConfig, ds: ImageDataset) -> PreparedData:
    """Explicit retrieval pairs: no caps (they would cut relevant items out of the corpus); the corpus is
    split into fit and validation rows as usual, and the qrels follow each corpus row to its position in
    `train ++ val`, the order the retrieval scorer searches."""
    if config.task != "retrieval":
        raise DatasetFormatError("this file holds explicit retrieval pairs (qrels): use task 'retrieval'",
                                 field="task")
    for cap in ("max_train", "max_test"):
        if getattr(config.dataset, cap) is not None:
            raise DatasetFormatError(f"{cap} does not apply to explicit pairs (it would drop relevant items)",
                                     field=f"dataset.{cap}")
    assert ds.qrels is not None
    fit_idx, val_idx = validation_split(ds.train.labels, config.val_fraction, config.seed)
    if len(val_idx) == 0 or len(fit_idx) < 2:
        raise DatasetFormatError(f"{len(ds.train)} corpus items are too few", field="dataset.spec")
    position = np.empty(len(ds.train), dtype=np.int64)
    position[np.concatenate([fit_idx, val_idx])] = np.arange(len(ds.train))
    qrels = np.column_stack([ds.qrels[:, 0], position[ds.qrels[:, 1]]])
    return PreparedData(dataset=ds, train=ds.train.subset(fit_idx), val=ds.train.subset(val_idx), test=ds.test,
                        qrels=qrels)


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
            **_layer_key(config, loaded),
            "train": data.train.identity,
            "val": data.val.identity,
            "test": data.test.identity,
            "transform": data_config_as_json(data_cfg),
            "features_version": FEATURES_VERSION,
            "feature_dtype": config.feature_dtype,
        }
    )


def _layer_key(config: AnalysisConfig, loaded: LoadedModel) -> dict:
    """A single layer keys its store as before (`layer`), so its cache is shared with `layers: [name]`."""
    names = resolve_layers(config, loaded)
    if len(names) == 1:
        return {"layer": None if names[0] == PENULTIMATE else names[0]}
    return {"layers": names}


def resolve_layers(config: AnalysisConfig, loaded: LoadedModel) -> list[str]:
    """The layers of the job, in forward order as asked: `layers`, the model's default sweep, or `layer`."""
    names = config.layer_names()
    if names is None:  # `sweep`: the model family's default (a Hugging Face encoder resolved its own)
        names = list(loaded.layers) if uses_feature_source(config) else list(default_sweep(loaded.module))
    return [n or PENULTIMATE for n in names]


def check_layer_memory(config: AnalysisConfig, widths: list[int], budget: int) -> None:
    """Refuse before extraction when the layers' statistics (`redundancy.preflight.layer_stats_bytes`) exceed
    `budget` (`Runtime.max_layer_stats_bytes`): the backstop of the service's check at submission."""
    reason = layer_memory_reason(widths, budget)
    if reason is not None:
        raise InvalidConfigError(reason, field="layers")


def needs_train_features(config: AnalysisConfig) -> bool:
    """Whether the train split's samples are stored, not only its statistics: the logistic probe
    trains on them, GCV refits on train + validation rows (`training_problem`), retrieval searches them."""
    return config.probe == "logistic" or config.lambda_select != "val" or config.task == "retrieval"


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
    def labels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        train, val, test = self.splits
        return train.labels, val.labels, test.labels


def prepare(config: AnalysisConfig, runtime: Runtime, tracker: Tracker | None = None) -> Prepared:
    """The `load_model` and `load_data` stages."""
    tracker = tracker or Tracker()
    # No timm model: precomputed vectors (`embeddings:`) or a Hugging Face encoder (`hf:`).
    # The source stands in for both the loaded model and the layer extractor; no transform, no heads.
    if uses_feature_source(config):
        with tracker.stage("load_model"):
            source = load_feature_source(config, runtime)
            if config.layers is not None:  # an hf: sweep (precomputed vectors have no layers)
                check_layer_memory(config, source.widths, runtime.max_layer_stats_bytes)  # type: ignore[attr-defined]
        with tracker.stage("load_data"):
            data = prepare_data(config, runtime)
        return Prepared(source, source, None, source.data_config, data, None)  # type: ignore[arg-type]
    with tracker.stage("load_model"):
        loaded = load_model(config.model.name, config.model.weights, seed=config.seed)
        extractor = FeatureExtractor(loaded.module, layers=resolve_layers(config, loaded))
        transform, data_cfg = make_transform(loaded, config.image_size)
        widths = extractor.measure_widths(data_cfg["input_size"])  # one image: the widths, before the job
        check_layer_memory(config, widths, runtime.max_layer_stats_bytes)
        facts = (model_facts(loaded, config.image_size)
                 if config.probe == "ridge" and config.task == "classification" else None)
    with tracker.stage("load_data"):
        data = prepare_data(config, runtime)
    return Prepared(loaded, extractor, transform, data_cfg, data, facts)


@dataclass
class Analysis:
    """What one analysis returns: the report, and beside it (never serialised into it) what a head for
    any δ is fitted from later: the statistics of exactly the rows the ridge probes were fitted on
    (train + val under GCV, the fit split under validation selection) and the model's facts, its
    backbone sha256 and timm data config at the extraction size (`redundancy.deploy.model_facts`).
    `model_facts` is None for the logistic probe, whose heads are not refitted from statistics."""

    report: Report
    stats: GramStats | None = None
    model_facts: tuple[str, dict] | None = None


def analyze(
    config: AnalysisConfig,
    runtime: Runtime | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Report:
    """Run one analysis and return its report. Raises a RedundancyError subclass on bad input,
    Cancelled when stopped. `run_analysis` returns the statistics for heads too."""
    return run_analysis(config, runtime, progress, should_stop).report


def run_analysis(
    config: AnalysisConfig,
    runtime: Runtime | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Analysis:
    """`analyze`, returning the `Analysis`: the composition of `prepare`, one extraction over every
    row, and `report_from_features`; a sharded run (`extract_shard` on row ranges, then
    `analyze_from_shards`) is the same code."""
    runtime = runtime or Runtime()
    tracker = Tracker(progress, should_stop)
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
            remote=runtime.remote_cache,
        )
    return report_from_features(config, prep, features, device, tracker, cache_hit)


def extract_shard(
    config: AnalysisConfig,
    prep: Prepared,
    rows: tuple[int, int],
    store: Path,
    device: str,
    runtime: Runtime,
    progress: ImagesProgressFn | None = None,
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
) -> Analysis:
    """The reduce of a sharded analysis: sum the shards' statistics, join their feature slices (in
    row order) and run the probes as `analyze` does."""
    tracker = Tracker(progress, should_stop)
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


def layer_features(features: Features, start: int, stop: int, pooling: str) -> Features:
    """One layer's columns `[start, stop)` of a joined store: its statistics are the diagonal block of the
    joined ones (exactly), its stored features the same columns."""
    stats = features.stats.columns(start, stop)

    def cols(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else np.ascontiguousarray(x[:, start:stop])

    return dataclasses.replace(features, stats=stats, x_train=cols(features.x_train), x_val=cols(features.x_val),
                               x_test=cols(features.x_test), pooling=pooling)


def report_from_features(
    config: AnalysisConfig, prep: Prepared, features: Features, device: str, tracker: Tracker, cache_hit: bool
) -> Analysis:
    """The `probe` and `advise` stages per layer, the answer across layers (`redundancy.sweep`), and the report.
    A single-layer job is the sweep with one layer."""
    extractor = prep.extractor
    names = list(getattr(extractor, "layers", [getattr(extractor, "layer", PENULTIMATE)]))
    if len(names) == 1:
        runs = [_layer_report(config, prep, features, device, tracker, cache_hit, names[0])]
    else:
        offsets = extractor.offsets
        if offsets[-1] != features.d:
            raise DatasetFormatError(f"the stored features have {features.d} columns, the layers {offsets[-1]}")
        runs = []
        for i, name in enumerate(names):
            pooling = extractor.poolings.get(name, features.pooling)
            runs.append(_layer_report(config, prep, layer_features(features, offsets[i], offsets[i + 1], pooling),
                                      device, tracker, cache_hit, name))
        joined = sweep_stats(config, features, [r.analysis.stats for r in runs], offsets)
        return dataclasses.replace(combine_layers(config, runs, prep), stats=joined)
    return combine_layers(config, runs, prep)


def sweep_stats(config: AnalysisConfig, features: Features, per_layer: list[GramStats | None],
                offsets: list[int]) -> GramStats | None:
    """What a head on any layer of a sweep is fitted from: the joined statistics of the probe's fit rows
    (`fit_statistics`), each layer's diagonal block set to exactly the statistics its own probe was fitted from
    (`redundancy.deploy.layer_stats` cuts it out again). None for the logistic probe (no head from statistics)."""
    if config.probe != "ridge" or any(st is None for st in per_layer):
        return None
    joined = fit_statistics(config, features)
    joined = joined.columns(0, joined.d)  # a copy: the extraction's own statistics stay as they are
    for st, a, b in zip(per_layer, offsets, offsets[1:], strict=False):
        assert st is not None and st.n == joined.n
        joined.total[a:b], joined.gram[a:b, a:b], joined.class_sums[:, a:b] = st.total, st.gram, st.class_sums
    return joined


@dataclass
class LayerRun:
    analysis: Analysis
    probe: ProbeRun


def combine_layers(config: AnalysisConfig, runs: list[LayerRun], prep: Prepared) -> Analysis:
    """The report of the reference layer, its recommendations replaced by the answer across layers, with
    every layer in `layers`."""
    reports = [r.analysis.report for r in runs]
    curves = [LayerCurve(rep.model.layer, rep.model.d, rep.curve, run.probe.intervals, run.probe.paired)
              for rep, run in zip(reports, runs, strict=True)]
    ref = choose_reference(curves)
    base = reports[ref]
    classes = base.fairness_groups
    recs = [across_layers(curves, classes, delta, config.delta_mode, config.criterion, ref)
            for delta in config.deltas]
    module = getattr(prep.loaded, "module", None)
    costs = {}
    if module is not None and len(reports) > 1:  # a sweep: what stopping at each layer saves
        costs = {c.layer: c for c in layer_costs(module, [lc.layer for lc in curves], prep.data_cfg["input_size"])}
    table = []
    for i, (rep, lc) in enumerate(zip(reports, curves, strict=True)):
        kind, score = full_selection(lc.curve, lc.d)
        answers = [LayerAnswer(delta=r.delta, k=r.k, fraction=r.fraction, score=r.score or r.accuracy,
                               met_below_full=r.met_below_full) for r in rep.recommendations]
        table.append(LayerResult(
            layer=lc.layer, index=intermediates_index(module, lc.layer) if module is not None else None, d=lc.d,
            pooling=rep.model.layer_pooling, full_accuracy=rep.full_accuracy, full_score=rep.full_accuracy,
            selection=kind, selection_score=score, reference=i == ref, fraction=answers[0].fraction,
            k=answers[0].k, answers=answers, summary=rep.summary, curve=rep.curve if len(reports) > 1 else [],
            **({"macs": costs[lc.layer].macs, "macs_fraction": costs[lc.layer].macs_fraction,
                "latency_fraction": costs[lc.layer].latency_fraction} if lc.layer in costs else {}),
        ))
    how = (f"{len(reports)} layers probed from one forward pass; the reference layer {curves[ref].layer} has the "
           f"best training-side score ({table[ref].selection}) of its full-layer probe, chosen without the test set; "
           "each recommendation is the (layer, k) with the fewest kept neurons whose test score is within δ of the "
           "reference layer's full-layer score, ties to the earlier layer")
    report = base.model_copy(update={"recommendations": recs, "layers": table, "layer_selection": how})
    return dataclasses.replace(runs[ref].analysis, report=report)


def _layer_report(
    config: AnalysisConfig, prep: Prepared, features: Features, device: str, tracker: Tracker, cache_hit: bool,
    layer: str,
) -> LayerRun:
    """One layer's `probe` and `advise` stages, and its report."""
    loaded, data, data_cfg = prep.loaded, prep.data, prep.data_cfg
    if data.qrels is not None:
        features = dataclasses.replace(features, qrels=data.qrels)
    with tracker.stage("probe"):
        run = run_probes(config, features, device, tracker)
        curve = run.curve

    with tracker.stage("advise"):
        classes = data.dataset.classes
        groups = list(DECILE_NAMES) if config.task == "retrieval" else None
        d = features.d
        recs = [
            advise(curve, groups or classes, d, delta, config.delta_mode, config.criterion, run.intervals, run.paired)
            for delta in config.deltas
        ]
        quantised = measure_recommended(config, features, curve, recs, device)
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
            layer=layer,
            layer_pooling=features.pooling,
            d=d,
            input_size=list(data_cfg["input_size"]),
        ),
        dataset=DatasetInfo(
            spec=config.dataset.spec,
            classes=classes,
            fairness_groups=groups,
            sizes={"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        ),
        full_accuracy=full.accuracy_mean,
        curve=curve,
        summary=summary,
        baselines=baselines,
        probe=config.probe,
        skipped_fractions=[SkippedFraction(fraction=f, k=k, reason=r) for f, k, r in run.skipped],
        quantised=quantised,
        recommendations=recs,
        timings=tracker.timings,
        environment=Environment(
            device=device,
            amp=device.startswith("cuda"),
            torch=torch.__version__,
            timm=timm.__version__,
            numpy=np.__version__,
            python=platform.python_version(),
            code_version=__version__,
            feature_cache_hit=cache_hit,
        ),
    )
    return LayerRun(Analysis(report, run.train_stats, prep.facts), run)


def measure_recommended(
    config: AnalysisConfig, features: Features, curve: list[CurvePoint], recs: list[Recommendation], device: str
) -> list[QuantisedScore]:
    """int8 re-scores (`redundancy.quantise`) of the random subsets and first-k at each recommended k;
    ridge probes only (a logistic probe is not kept to re-score)."""
    if config.probe != "ridge" or config.task == "retrieval":
        return []
    train = training_problem(config, features)
    targets = [(m.method, m.k) for r in recs for m in r.methods if m.method in ("random_subset", "first_k")]
    return measure_int8(train.problem, train.x_val, train.y_val, features.x_val, features.x_test, features.y_test,
                        curve, targets, config.seed, config.lambda_select, device, config.subsets)


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
    if config.task == "retrieval":
        return out + _beats_full(summary, d, full_accuracy, config.score_metric)
    by_val = (config.probe == "logistic" and config.logistic_solver == "sgd") or config.lambda_select == "val"
    n = run.n_train if config.probe == "ridge" else features.stats.n
    if n < d:
        out.append(f"{n} training rows for {d} neurons: the full-layer probe can overfit, which moves every ratio "
                   "to the full layer")
    if by_val and n_val < 5 * c:
        out.append(f"only {n_val} validation images for {c} classes: the selection on validation is noisy")
    if run.edge_ks:
        out.append(f"the GCV-chosen λ sat at the edge of its grid for k = {', '.join(map(str, run.edge_ks[:8]))}"
                   f"{' …' if len(run.edge_ks) > 8 else ''}: GCV was still falling there")
    return out + _beats_full(summary, d, full_accuracy, config.score_metric)


def _beats_full(summary: list[FractionSummary], d: int, full_score: float, metric: str) -> list[str]:
    better = [s for s in summary if s.k < d and s.accuracy_mean > full_score + 0.01]
    if not better:
        return []
    return [f"subsets beat the full layer by more than 1 point of {metric} (e.g. k = {better[0].k}: "
            f"{better[0].accuracy_mean:.4f} vs {full_score:.4f}); recommendations are relative to a noisy baseline"]


@dataclass
class ProbeRun:
    curve: list[CurvePoint]
    skipped: list[tuple[float, int, str]]
    intervals: dict[int, tuple[float, float]]  # bootstrap CI of the random subsets' mean accuracy, by k
    paired: PairedBootstrap | None = None  # per-sample correctness by k, for the paired margin
    n_train: int = 0  # rows the ridge probe was fitted on
    train_stats: GramStats | None = None  # the statistics of exactly those rows (what a head is refitted from)
    edge_ks: list[int] = field(default_factory=list)  # subset sizes whose GCV λ sat at the grid's edge


def run_probes(
    config: AnalysisConfig, features: Features, device: str = "cpu", tracker: Tracker | None = None
) -> ProbeRun:
    """Probe every (fraction, seed) of the grid with part-vs-whole and subset-vs-subset CKA; then, as
    configured, refine f* by bisection, probe the baselines, and bootstrap the test set."""
    tracker = tracker or Tracker()
    ctx = probe_context(config, features, device, tracker)
    train = ctx.train
    plan = plan_subsets(config.fractions, features.d, config.seeds, config.subsets)
    probed = probe_random(ctx, plan.entries, "random", (0.0, 0.6))
    if config.refine_resolution is not None:
        probed.extend(Refinement(ctx, probed.points).run())
    tracker.report("probe", 0.7, "baselines")
    baselines = probe_baselines(ctx, plan.entries) if config.baselines else Probed()
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
