"""What the service answers, as pydantic models.

Mirrors `service/schemas.py` (`JobOut`, `RecommendationOut`, `DatasetOut`, `Problem`) field for field without
importing it: the client installs without the service, torch or the engine. Every model allows
extra fields, so a newer server that adds a field does not break an older client; a test keeps the
two in step.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
DeltaMode = Literal["relative", "absolute"]
Criterion = Literal["mean", "worst_seed"]
# The engine's defaults of `seed` and `seeds` (AnalysisConfig; a test keeps them in step): a job list
# names a job's seed only where it differs.
DEFAULT_SEED = 0
DEFAULT_SEEDS = 5


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class JobError(_Open):
    code: str
    message: str
    field: str | None = None


class JobLinks(_Open):
    self: str
    result: str
    recommendation: str
    cancel: str
    plot_png: str
    plot_svg: str
    deliveries: str | None = None
    artifact: str | None = None


class JobDevice(_Open):
    """Where a job runs (queues by device): the `device` asked for, the queue it is routed to (cpu | gpu) and when
    it fell back from the gpu to the cpu queue."""

    requested: str = "auto"
    queue: str | None = None
    fallback_after: float | None = None
    fell_back_at: dt.datetime | None = None


class JobWaiting(_Open):
    """While a job waits in the gpu queue: the queue's depth, how many workers consuming it are alive (None: not
    looked yet) and when it falls back to the cpu queue."""

    worker: str = "gpu"
    queue_depth: int | None = None
    workers_alive: int | None = None
    fallback_at: dt.datetime | None = None


class JobInfo(_Open):
    """A snapshot of a job (`GET /v1/jobs/{id}`)."""

    id: str
    status: JobStatus
    stage: str | None = None
    progress: float = 0.0
    message: str | None = None
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    cancel_requested: bool = False
    error: JobError | None = None
    config_hash: str
    attempts: int = 0
    request: dict[str, Any] = Field(default_factory=dict)
    callback_url: str | None = None
    # The job option `mlflow` and how logging went: {tracking_uri, experiment, state (pending | logged | failed |
    # skipped), run_id, error, logged_at}; None for a job without it (or from a server without the option).
    mlflow: dict[str, Any] | None = None
    device: JobDevice = Field(default_factory=JobDevice)  # absent from a server without queues by device
    waiting: JobWaiting | None = None
    links: JobLinks
    # Extraction progress in images, when the server reports it (read if present, else None).
    images_done: int | None = None
    images_total: int | None = None
    eta_s: float | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def layers(self) -> list[str] | str | None:
        """The job's `layers` as submitted: a list of layer names, `"sweep"`, or None (one `layer`)."""
        value = self.request.get("layers")
        return value if isinstance(value, (list, str)) else None


class JobPage(_Open):
    items: list[JobInfo]
    next_page_token: str | None = None


class ClassLoss(_Open):
    cls: str = Field(alias="class")
    accuracy_full: float
    accuracy_at: float
    change: float


class Fairness(_Open):
    gini_full: float
    gini_at: float
    gini_change: float
    cv_full: float
    cv_at: float
    cv_change: float
    worst_class_full: float
    worst_class_at: float
    worst_class_change: float
    range_full: float
    range_at: float
    range_change: float
    # Each metric is the mean over seeds of that seed's own value; its spread over seeds (std):
    gini_full_std: float = 0.0
    gini_at_std: float = 0.0
    cv_full_std: float = 0.0
    cv_at_std: float = 0.0
    worst_class_full_std: float = 0.0
    worst_class_at_std: float = 0.0
    range_full_std: float = 0.0
    range_at_std: float = 0.0
    seeds_full: int | None = None
    seeds_at: int | None = None
    # Retrieval only: the mean score of the worst 10 % of queries (per seed, then averaged); None otherwise.
    worst_decile_full: float | None = None
    worst_decile_at: float | None = None
    worst_decile_change: float | None = None
    most_hurt_classes: list[ClassLoss]


class MethodAnswer(_Open):
    """One reduction method at its fewest dimensions within δ."""

    method: str
    k: int
    fraction: float
    score: float
    met_below_full: bool
    fairness: Fairness
    serving: str


class Verdict(_Open):
    method: str
    k: int
    reason: str
    nested: bool | None = None
    nested_note: str | None = None


class Recommendation(_Open):
    """The minimal neuron fraction within δ of the full layer, and its fairness cost."""

    job_id: str
    model: str
    weights: str
    dataset: str
    delta: float
    mode: DeltaMode
    criterion: Criterion
    fraction: float
    k: int
    d: int
    dr: float
    accuracy: float
    full_accuracy: float
    threshold: float
    met_below_full: bool
    holds_worst_seed: bool
    holds_ci_lower: bool | None = None
    worst_seed_accuracy: float
    ci_low: float | None = None
    ci_high: float | None = None
    margin_ci_low: float | None = None  # the paired bootstrap of (subset − threshold) behind holds_ci_lower
    margin_ci_high: float | None = None
    ci_method: str | None = None
    savings: dict[str, Any] | None = None  # embedding bytes and head size, full vs kept
    refined: bool = False
    note: str
    fairness: Fairness
    methods: list[MethodAnswer] = []  # every reduction the job ran, at its fewest dims within δ
    verdict: Verdict | None = None  # the method to ship
    storage: dict[str, Any] | None = None  # bytes per vector and index limits: full layer and verdict
    budget: dict[str, Any] | None = None  # asked with max_dims / max_bytes: the best score per method
    constrained: dict[str, Any] | None = None  # asked with fairness limits: the smallest k meeting them
    metric: str = "accuracy"  # what accuracy/score measure: accuracy, or a retrieval metric (ndcg@10, ...)
    score: float | None = None  # the score at k (classification: = accuracy)
    full_score: float | None = None  # the full layer's score (classification: = full_accuracy)
    layer: str | None = None  # the layer k neurons are kept from (a sweep chooses it)
    reference_layer: str | None = None  # the layer whose full-layer score δ applies to
    reference_score: float | None = None  # that reference layer's full-layer score


class LayerResult(_Open):
    """One layer of a layer sweep (the report's `layers`): its width, full-layer score, the training-side score
    the reference layer is chosen by, its own f* at the first δ, and what running the network up to it costs."""

    layer: str
    index: int | None = None  # timm: the `forward_intermediates` index that cuts the network here
    d: int
    pooling: str | None = None
    full_accuracy: float
    full_score: float | None = None
    selection: str | None = None  # gcv (lower is better) or val (higher is better)
    selection_score: float | None = None
    reference: bool = False  # the reference layer: δ applies to its full-layer score
    fraction: float
    k: int
    macs: int | None = None
    macs_fraction: float | None = None
    latency_fraction: float | None = None


class DatasetInfo(_Open):
    """An uploaded dataset (`POST /v1/datasets`); a job names it by `spec` (`upload:<id>`)."""

    id: str
    spec: str
    filename: str
    format: str
    size_bytes: int
    sha256: str
    created_at: dt.datetime


class DatasetPage(_Open):
    items: list[DatasetInfo]
    next_page_token: str | None = None


class ProblemField(_Open):
    field: str
    reason: str
    location: str | None = None
    code: str | None = None


class Problem(_Open):
    """RFC 9457 problem details (`application/problem+json`)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[ProblemField] | None = None
    hint: str | None = None
