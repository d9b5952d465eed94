"""API tests without external services: SQLite in a temp dir, jobs run in-process with a fake engine.

The fake engine returns a real `redundancy.Report` (curve, summary and recommendations computed by
the engine's own `summarize`/`recommend`), so what the API stores and answers is checked against the
engine's pure functions. The real engine runs in tests/integration.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from redundancy.advice.recommend import recommend, summarize
from redundancy.config import AnalysisConfig
from redundancy.errors import Cancelled
from redundancy.pipeline import Analysis
from redundancy.report import CurvePoint, DatasetInfo, Environment, ModelInfo, Recommendation, Report
from redundancy.sources.stats import GramStats
from service.api.schemas import SMALL_JOB_EXAMPLE
from service.core import migrate
from service.core.config import Settings
from service.core.db import dispose_all
from service.main import create_app
from workers.runner import execute_job

CLASSES = ["a", "b", "c"]
D = 64


def fake_report(config: AnalysisConfig) -> Report:
    curve: list[CurvePoint] = []
    for f in config.fractions:
        k = max(1, round(f * D))
        seeds = 1 if f == 1.0 else config.seeds
        for s in range(seeds):
            base = 0.5 + 0.4 * f ** 0.3 - 0.01 * s
            per_class = [min(1.0, base + 0.05), base, max(0.0, base - 0.05 - 0.1 * (1 - f))]
            curve.append(CurvePoint(fraction=f, k=k, seed=s, accuracy=sum(per_class) / 3,
                                    per_class_accuracy=per_class, cka=f ** 0.5, lam=1.0))
    summary = summarize(curve)
    recs = [recommend(curve, CLASSES, D, dl, config.delta_mode, config.criterion) for dl in config.deltas]
    full = next(s for s in summary if s.k == D)
    report = Report(
        config=config,
        model=ModelInfo(name=config.model.name, weights_source=config.model.weights, weights_identity="fake",
                        weights_random=True, layer="head", layer_pooling="avg", d=D, input_size=[3, 32, 32]),
        dataset=DatasetInfo(spec=config.dataset.spec, classes=CLASSES, sizes={"train": 9, "val": 1, "test": 3}),
        full_accuracy=full.accuracy_mean,
        curve=curve,
        summary=summary,
        recommendations=recs,
        timings={"load_model": 0.01, "load_data": 0.01, "extract": 0.02, "probe": 0.01, "advise": 0.0},
        environment=Environment(device="cpu", amp=False, torch="x", timm="x", numpy="x", python="3.11",
                                code_version="test", feature_cache_hit=False),
    )
    return report


def fake_analysis(report: Report) -> Analysis:
    """What `run_analysis` returns beside the report for the artifact store: statistics and model facts
    (ridge only)."""
    if report.config.probe != "ridge":
        return Analysis(report)
    x, y = fake_rows(report.config)
    return Analysis(report, GramStats.from_features(x, y, len(CLASSES)), (FAKE_WEIGHTS_SHA, dict(FAKE_DATA_CONFIG)))


FAKE_WEIGHTS_SHA = "f" * 64
FAKE_DATA_CONFIG = {"input_size": (3, 32, 32), "interpolation": "bilinear", "mean": (0.5, 0.5, 0.5),
                    "std": (0.5, 0.5, 0.5), "crop_pct": 1.0, "crop_mode": "center"}


def fake_rows(config: AnalysisConfig) -> tuple[np.ndarray, np.ndarray]:
    """The rows the fake probe was 'fitted' on: train + val (9 + 1) under GCV, train (9) under val."""
    n = 9 + (1 if config.ridge_fit_splits() == ("train", "val") else 0)
    rng = np.random.default_rng(config.seed)
    return rng.normal(size=(n, D)) + np.arange(D) / D, np.arange(n) % len(CLASSES)


STAGES = ("load_model", "load_data", "extract", "probe", "advise")


class FakeEngine:
    """Callable like `redundancy.pipeline.run_analysis`. `block` makes it wait in `extract` until told or
    stopped. `report_fn` returns the report (the statistics are `fake_analysis`'s) or a whole `Analysis`."""

    def __init__(self) -> None:
        self.block = threading.Event()
        self.blocking = False
        self.entered = threading.Event()
        self.raise_: BaseException | None = None
        self.calls = 0
        self.report_fn: Callable[[AnalysisConfig], Report | Analysis] = fake_report

    def __call__(self, config: AnalysisConfig, runtime: Any = None, progress: Callable | None = None,
                 should_stop: Callable[[], bool] | None = None) -> Analysis:
        from redundancy import ProgressEvent

        self.calls += 1
        for i, stage in enumerate(STAGES):
            if should_stop and should_stop():
                raise Cancelled("analysis cancelled")
            if progress:
                progress(ProgressEvent(stage, 0.0, i / len(STAGES), f"{stage} starting"))
            if stage == "extract":
                if self.raise_ is not None:
                    raise self.raise_
                if self.blocking:
                    self.entered.set()
                    while not self.block.wait(0.05):
                        if should_stop and should_stop():
                            raise Cancelled("analysis cancelled")
        out = self.report_fn(config)
        return out if isinstance(out, Analysis) else fake_analysis(out)


class RecordingQueue:
    """A `JobQueue` that records the ids it was asked to send; the test then runs them in-process."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def enqueue(self, job_id: str) -> None:
        self.sent.append(job_id)


class Harness(RecordingQueue):
    def __init__(self, settings: Settings, client: TestClient, engine: FakeEngine) -> None:
        super().__init__()
        self.settings, self.client, self.engine = settings, client, engine

    def run(self, job_id: str) -> str:
        return execute_job(job_id, self.settings, analyze=self.engine, worker_name="test")

    def run_all(self) -> list[str]:
        out = []
        while self.sent:
            out.append(self.run(self.sent.pop(0)))
        return out

    def submit(self, body: dict[str, Any] | None = None, **headers: str) -> dict[str, Any]:
        r = self.client.post("/v1/jobs", json=body or small_job(), headers=headers)
        assert r.status_code == 202, r.text
        return r.json()

    def wait_status(self, job_id: str, status: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] == status or time.monotonic() > deadline:
                return job
            time.sleep(0.05)


def stored_answer(report: dict[str, Any], delta: float, mode: str, criterion: str) -> Recommendation | None:
    """The engine's own recommendation for a (δ, mode, criterion) its report holds (what the API answers for
    a δ the job asked for), else None (the API then answers from the curve)."""
    for rec in report.get("recommendations") or []:
        if (rec.get("delta"), rec.get("mode"), rec.get("criterion")) == (delta, mode, criterion):
            return Recommendation.model_validate(rec)
    return None


def single_layer(rec: Recommendation, layer: str | None) -> Recommendation:
    """The engine's answer as a single-layer job serves it: named after the job's layer, which is its own
    reference (a single layer is the sweep of one, issue 21)."""
    if layer is None:
        return rec
    return rec.model_copy(update={"layer": layer, "reference_layer": layer, "reference_score": rec.full_accuracy})


def small_job(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(SMALL_JOB_EXAMPLE)
    body.update(over)
    return body


def make_settings(tmp_path: Path, **over: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": f"sqlite:///{tmp_path / 'advisor.sqlite'}",
        "broker_url": None,
        "maintenance_interval": 0,
        "heartbeat": 0.2,
    }
    values.update(over)
    return Settings(**values)


@pytest.fixture
def settings_factory() -> Iterator[Callable[..., Settings]]:
    """`settings_factory(tmp_path, **overrides)`: migrated SQLite settings in that directory."""

    def make(tmp: Path, **over: Any) -> Settings:
        s = make_settings(tmp, **over)
        migrate.upgrade(s.db_url)
        return s

    yield make
    dispose_all()


@pytest.fixture
def settings(tmp_path: Path, settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(tmp_path)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def harness(settings: Settings, engine: FakeEngine) -> Iterator[Harness]:
    h = Harness(settings, None, engine)  # type: ignore[arg-type]
    app = create_app(settings, queue=h, maintenance=False)
    with TestClient(app) as client:
        h.client = client
        yield h


@pytest.fixture
def recording_queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def client(harness: Harness) -> TestClient:
    return harness.client


@pytest.fixture
def job_body() -> Callable[..., dict[str, Any]]:
    """`job_body(**overrides)`: a small valid POST /v1/jobs body."""
    return small_job


SWEEP_LAYERS = (("stage", 32, 0.45), ("head", D, 0.4))  # (layer, d, the full-layer probe's GCV): head is the reference


def fake_sweep_report(config: AnalysisConfig) -> Report:
    """A two-layer sweep, `stage` (d 32) and `head` (d 64, the reference by its lower GCV), each curve the fake
    engine's shape at its width; the answers across layers by the engine's own `redundancy.sweep`."""
    from redundancy.report import LayerAnswer, LayerResult
    from redundancy.sweep import LayerCurve, across_layers, choose_reference

    base = fake_report(config)
    curves = []
    for name, d, gcv in SWEEP_LAYERS:
        curve = [p.model_copy(update={"k": max(1, round(p.fraction * d)), "selection": "gcv",
                                      "selection_score": gcv + 0.01 * p.seed}) for p in base.curve]
        curves.append(LayerCurve(name, d, curve))
    ref = choose_reference(curves)
    recs = [across_layers(curves, CLASSES, dl, config.delta_mode, config.criterion, ref) for dl in config.deltas]
    table = []
    for i, lc in enumerate(curves):
        own = [across_layers([lc], CLASSES, dl, config.delta_mode, config.criterion) for dl in config.deltas]
        summary = summarize(lc.curve)
        full = next(s for s in summary if s.k == lc.d)
        table.append(LayerResult(
            layer=lc.layer, index=i, d=lc.d, pooling="avg", full_accuracy=full.accuracy_mean,
            full_score=full.accuracy_mean, selection="gcv", selection_score=SWEEP_LAYERS[i][2], reference=i == ref,
            fraction=own[0].fraction, k=own[0].k, summary=summary, curve=lc.curve,
            answers=[LayerAnswer(delta=r.delta, k=r.k, fraction=r.fraction, score=r.accuracy,
                                 met_below_full=r.met_below_full) for r in own]))
    model = base.model.model_copy(update={"layer": curves[ref].layer, "d": curves[ref].d})
    return base.model_copy(update={"model": model, "curve": curves[ref].curve, "summary": table[ref].summary,
                                   "recommendations": recs, "layers": table,
                                   "layer_selection": "2 layers probed (a fake sweep)"})
