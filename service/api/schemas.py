"""Request and response bodies of the HTTP API (pydantic v2)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from redundancy.config import AnalysisConfig
from redundancy.deploy import MultiTaskRecommendation
from redundancy.report import Recommendation
from service.core.links import job_links
from service.core.mlflow_runs import MlflowOption, shown_state
from service.core.models import DatasetUpload, Job, as_utc
from service.core.placement import fallback_at
from service.core.status import JobStatus
from service.core.uploads import spec_of
from service.core.webhooks import normalise_callback_url

DEMO_JOB: dict[str, Any] = {
    "model": {"name": "tf_efficientnet_lite0", "weights": "bundled"},
    "dataset": {"spec": "digits"},
}

SMALL_JOB_EXAMPLE: dict[str, Any] = {
    "model": {"name": "resnet18", "weights": "random"},
    "dataset": {"spec": "digits", "max_train": 300, "max_test": 100},
    "image_size": 32,
    "fractions": [0.1, 0.5, 1.0],
    "seeds": 2,
    "probe": "ridge",
    "deltas": [0.01, 0.05],
    "delta_mode": "relative",
}

LOGISTIC_JOB_EXAMPLE: dict[str, Any] = {
    "model": {"name": "resnet18", "weights": "random"},
    "dataset": {"spec": "digits", "max_train": 200, "max_test": 100},
    "image_size": 32,
    "fractions": [0.1, 0.5, 1.0],
    "seeds": 2,
    "probe": "logistic",
    "logistic_epochs": 10,
    "logistic_lr": 0.1,
    "logistic_weight_decay": 0.0005,
    "logistic_batch_size": 256,
    "baselines": ["pca", "first_k", "random_projection"],
    "cka": "debiased",
    "refine_resolution": 0.01,
    "bootstrap": 500,
    "ci_level": 0.95,
    "deltas": [0.01, 0.05],
}

# Per-field documentation for the OpenAPI schema of `JobCreate`. Validation is the engine's own
# (`JobCreate` *is* an `AnalysisConfig`); this only adds examples and fills in missing descriptions.
FIELD_DOCS: dict[str, dict[str, Any]] = {
    "layer": {"examples": ["layer4", None]},
    "image_size": {"examples": [32, 224]},
    "fractions": {
        "description": "Neuron fractions to probe, each in (0, 1]; 1.0 is always added. Default: the paper's "
        "14-fraction grid.",
        "examples": [[0.01, 0.05, 0.1, 0.5, 1.0]],
    },
    "seeds": {"examples": [5]},
    "probe": {
        "description": "Linear probe trained on each neuron subset: `ridge` (closed form, λ chosen on the "
        "validation split) or `logistic` (softmax regression trained by SGD; see `logistic_*`).",
        "examples": ["ridge", "logistic"],
    },
    "deltas": {"description": "Tolerated accuracy losses δ, each in [0, 1).", "examples": [[0.01, 0.05, 0.1]]},
    "delta_mode": {
        "description": "`relative`: a fraction must reach (1 − δ)·acc(1); `absolute`: acc(1) − δ.",
        "examples": ["relative"],
    },
    "criterion": {
        "description": "`mean`: the seed-mean accuracy must reach the threshold; `worst_seed`: every seed must.",
        "examples": ["mean"],
    },
    "seed": {"examples": [0]},
    "val_fraction": {"examples": [0.1]},
    "batch_size": {"description": "Feature-extraction batch size.", "examples": [64]},
    "baselines": {"examples": [["pca", "first_k", "random_projection"], []]},
    "cka": {"examples": ["biased", "debiased"]},
    "refine_resolution": {"examples": [0.005, None]},
    "bootstrap": {"examples": [1000, 0]},
    "ci_level": {"description": "Confidence level of the bootstrap intervals, in (0.5, 1).", "examples": [0.95]},
    "logistic_epochs": {"description": "Logistic probe only: training epochs.", "examples": [30]},
    "logistic_lr": {"description": "Logistic probe only: learning rate, in (0, 10].", "examples": [0.1]},
    "logistic_weight_decay": {
        "description": "Logistic probe only: L2 weight decay, in [0, 1] (reported as the point's `lam`).",
        "examples": [0.0005],
    },
    "logistic_batch_size": {"description": "Logistic probe only: minibatch size.", "examples": [256]},
}


def _document_fields(schema: dict[str, Any]) -> None:
    props = schema.get("properties", {})
    for name, docs in FIELD_DOCS.items():
        prop = props.get(name)
        if prop is None:
            continue
        prop.setdefault("examples", docs.get("examples"))
        if "description" in docs:
            prop.setdefault("description", docs["description"])
    schema["examples"] = [DEMO_JOB, SMALL_JOB_EXAMPLE, LOGISTIC_JOB_EXAMPLE]


SERVICE_FIELDS = {"callback_url", "mlflow", "device", "device_fallback_after"}
"""The request fields that are the service's, not the engine's."""


class JobCreate(AnalysisConfig):
    """An analysis to run: the engine's `AnalysisConfig`, field for field, validated by the engine's own
    rules. Omitted fields take the engine's defaults (the paper's 14-fraction grid, 5 seeds, ridge probes,
    δ ∈ {0.01, 0.05, 0.1} relative, all three baselines, biased CKA, 1000 bootstrap resamples, no
    refinement)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_document_fields)

    callback_url: str | None = Field(
        None,
        max_length=2048,
        description="Webhook: when the job succeeds, fails or is cancelled the server POSTs a signed event "
        "here (Standard Webhooks; verify with the secret from `GET /v1/webhooks/secret`). http or https; "
        "the host must resolve to public addresses unless the server allows others.",
        examples=["https://ci.example.com/hooks/advisor"],
    )

    mlflow: MlflowOption | None = Field(
        None,
        description="Log the job to MLflow when it succeeds (the server's optional extra `mlflow`): the config "
        "as params, the curve and every recommendation as metrics and tables, the plot and each method's "
        "artifacts, as `advisor export ID --mlflow URI` does. A failure to log leaves the job succeeded; the "
        "job's `mlflow` says how it went.",
        examples=[{"tracking_uri": "https://mlflow.example.com", "experiment": "redundancy-advisor"}],
    )

    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Where the job runs: `cuda` → a gpu worker's queue; `cpu` → a cpu worker's queue; `auto` → the "
        "gpu queue when the server has gpu workers (`ADVISOR_GPU_WORKERS`), else the cpu queue. The answer does "
        "not depend on it.",
        examples=["cuda"],
    )
    device_fallback_after: float | None = Field(
        None,
        ge=0,
        le=7 * 86400,
        description="Seconds a job in the gpu queue may wait for a gpu worker before it moves to the cpu queue "
        "(recorded as the job's `fell_back_at`); null: it waits for a gpu worker however long.",
        examples=[600],
    )

    @field_validator("callback_url")
    @classmethod
    def _normalised_callback_url(cls, value: str | None) -> str | None:
        """Stored and sent as plain ASCII: IDNA host, percent-encoded path and query (a URL that cannot be
        encoded is a 422 naming ``callback_url``)."""
        return normalise_callback_url(value) if value else value

    def analysis_config(self) -> AnalysisConfig:
        """The engine's part of the request (everything but the service's own fields)."""
        return AnalysisConfig.model_validate(self.model_dump(exclude=SERVICE_FIELDS))


class JobError(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `unknown_dataset`, `internal_error`.")
    message: str
    field: str | None = Field(None, description="The request field at fault, when there is one.")


class JobLinks(BaseModel):
    self: str
    result: str
    recommendation: str
    cancel: str
    plot_png: str
    plot_svg: str
    deliveries: str
    artifact: str = Field(description="The subset head for a δ (`?delta=`), as .safetensors; its model card at "
                          "`/artifact/card`.")

    @classmethod
    def of(cls, job_id: str) -> JobLinks:
        return cls(**job_links(job_id))


class MlflowState(MlflowOption):
    state: Literal["pending", "logged", "failed", "skipped"] = Field(
        description="pending until the job succeeds and its worker has logged it; logged (see `run_id`); failed "
        "(see `error`: the job itself stays succeeded); skipped: the job did not succeed.")
    run_id: str | None = Field(None, description="The MLflow run, once logged.")
    error: str | None = Field(None, description="Why logging failed.")
    logged_at: str | None = Field(None, description="When the worker logged it, or tried to (ISO 8601).")


class Waiting(BaseModel):
    """What a queued job waits for, while it waits in the gpu queue."""

    worker: Literal["gpu"] = Field("gpu", description="The kind of worker the job waits for.")
    queue_depth: int | None = Field(None, description="Messages waiting in the gpu queue when the server last "
                                    "looked (every maintenance round); null: not read yet or unreadable.")
    workers_alive: int | None = Field(None, description="Workers consuming the gpu queue that were alive then (each "
                                      "beats every few seconds; alive until `ADVISOR_STALE_AFTER` after its last "
                                      "beat); 0: none; null: not looked yet.")
    fallback_at: dt.datetime | None = Field(None, description="When it moves to the cpu queue if no gpu worker "
                                            "took it; null: never (no `device_fallback_after`).")


class JobDevice(BaseModel):
    requested: Literal["auto", "cpu", "cuda"] = Field("auto", description="The request's `device`.")
    queue: Literal["cpu", "gpu"] | None = Field(None, description="The queue it is routed to now.")
    fallback_after: float | None = Field(None, description="The request's `device_fallback_after` (gpu queue).")
    fell_back_at: dt.datetime | None = Field(None, description="When it fell back from the gpu to the cpu queue.")

    @classmethod
    def of(cls, job: Job) -> JobDevice:
        return cls(requested=job.device or "auto", queue=job.route, fallback_after=job.device_fallback_after,
                   fell_back_at=as_utc(job.fell_back_at))


class JobOut(BaseModel):
    id: str
    status: JobStatus
    stage: str | None = Field(
        None, description="load_model | load_data | extract | probe | advise while running; done at the end; "
        "`waiting for a gpu worker` while queued in the gpu queue, with whether a gpu worker is alive and the "
        "queue's depth once the server has looked, e.g. `waiting for a gpu worker (none seen in the last 20 s; "
        "queue depth 3)` or `(2 alive; queue depth 3)`."
    )
    progress: float = Field(ge=0.0, le=1.0, description="Overall progress, 0..1.")
    message: str | None = None
    images_done: int | None = Field(None, description="During extraction: images through the model so far "
                                    "(summed over the shards of a sharded job).")
    images_total: int | None = Field(None, description="During extraction: images to extract (train + val + test).")
    eta_s: float | None = Field(None, description="Estimated seconds of extraction left, whole seconds (the one "
                                "ETA: `advisor status` and the web UI print it as is); null when unknown.")
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    cancel_requested: bool = False
    error: JobError | None = None
    config_hash: str
    attempts: int = 0
    request: dict[str, Any] = Field(description="The normalised analysis configuration.")
    callback_url: str | None = Field(None, description="Where the job's webhook event goes, if anywhere.")
    mlflow: MlflowState | None = Field(None, description="The job's `mlflow` option and how logging went.")
    device: JobDevice = Field(default_factory=JobDevice, description="The device asked for and the queue it went to.")
    waiting: Waiting | None = Field(None, description="While queued in the gpu queue (stage `waiting for a gpu "
                                    "worker …`): the queue's depth, its live workers and when it falls back to the "
                                    "cpu queue.")
    links: JobLinks

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "6f1c2b8e-3f7a-4d1e-9c55-2b0c7d1e9a01",
                    "status": "running",
                    "stage": "extract",
                    "progress": 0.42,
                    "message": "batch 12/28",
                    "images_done": 768,
                    "images_total": 1792,
                    "eta_s": 41.5,
                    "created_at": "2026-01-01T12:00:00Z",
                    "started_at": "2026-01-01T12:00:01Z",
                    "finished_at": None,
                    "cancel_requested": False,
                    "error": None,
                    "config_hash": "9b1f…",
                    "attempts": 1,
                    "request": DEMO_JOB,
                    "links": {
                        "self": "/v1/jobs/6f1c2b8e-3f7a-4d1e-9c55-2b0c7d1e9a01",
                        "result": "/v1/jobs/6f1c2b8e-3f7a-4d1e-9c55-2b0c7d1e9a01/result",
                        "recommendation": "/v1/jobs/6f1c2b8e-3f7a-4d1e-9c55-2b0c7d1e9a01/recommendation",
                        "cancel": "/v1/jobs/6f1c2b8e-3f7a-4d1e-9c55-2b0c7d1e9a01/cancel",
                        "plot_png": "/v1/jobs/6f1c2b8e-3f7a-4d1e-9c55-2b0c7d1e9a01/plot.png",
                        "plot_svg": "/v1/jobs/6f1c2b8e-3f7a-4d1e-9c55-2b0c7d1e9a01/plot.svg",
                        "deliveries": "/v1/jobs/6f1c2b8e-3f7a-4d1e-9c55-2b0c7d1e9a01/deliveries",
                        "artifact": "/v1/jobs/6f1c2b8e-3f7a-4d1e-9c55-2b0c7d1e9a01/artifact",
                    },
                }
            ]
        }
    )


    @classmethod
    def of(cls, job: Job) -> JobOut:
        error = None
        if job.error_code:
            error = JobError(code=job.error_code, message=job.error_message or "", field=job.error_field)
        return cls(
            id=job.id,
            status=job.status,
            stage=job.stage,
            progress=max(0.0, min(1.0, float(job.progress or 0.0))),
            message=job.message,
            images_done=job.images_done,
            images_total=job.images_total,
            eta_s=job.eta_s,
            created_at=as_utc(job.created_at),  # type: ignore[arg-type]
            started_at=as_utc(job.started_at),
            finished_at=as_utc(job.finished_at),
            cancel_requested=bool(job.cancel_requested),
            error=error,
            config_hash=job.config_hash,
            attempts=job.attempts or 0,
            request=job.request,
            callback_url=job.callback_url,
            mlflow=shown_state(job),
            device=JobDevice.of(job),
            waiting=_waiting(job),
            links=JobLinks.of(job.id),
        )


def _waiting(job: Job) -> Waiting | None:
    if job.status != JobStatus.QUEUED or job.route != "gpu":
        return None
    return Waiting(queue_depth=job.queue_depth, workers_alive=job.workers_alive, fallback_at=fallback_at(job))


class JobList(BaseModel):
    items: list[JobOut]
    next_page_token: str | None = Field(None, description="Pass as `page_token` for the next page; null at the end.")


class RecommendationOut(Recommendation):
    """The minimal neuron fraction within δ of the full layer, and its fairness cost."""

    job_id: str
    model: str
    weights: str
    dataset: str

    model_config = ConfigDict(populate_by_name=True)

    @classmethod
    def of(cls, rec: Recommendation, job: Job) -> RecommendationOut:
        return cls(
            **rec.model_dump(by_alias=True),
            job_id=job.id,
            model=job.model_name,
            weights=str(job.request.get("model", {}).get("weights", "")),
            dataset=job.dataset_spec,
        )


class MultiTaskRecommendationOut(MultiTaskRecommendation):
    """The smallest k meeting δ on every named dataset, per-dataset accuracy and fairness there, and the
    dataset that binds the answer; from each dataset's latest succeeded job."""

    model: str
    weights: str
    jobs: dict[str, str] = Field(description="The job behind each dataset's numbers, by dataset.")

    @classmethod
    def of(cls, answer: MultiTaskRecommendation, model: str, jobs: dict[str, Job]) -> MultiTaskRecommendationOut:
        first = next(iter(jobs.values()))
        return cls(
            **answer.model_dump(), model=model, weights=str(first.request.get("model", {}).get("weights", "")),
            jobs={name: job.id for name, job in jobs.items()},
        )


class ProblemField(BaseModel):
    field: str
    reason: str
    location: str | None = Field(None, description="body | query | path | header")
    code: str | None = Field(None, description="Machine-readable code of this field's problem, e.g. `unknown_model`, "
                             "`path_not_allowed`, `dataset_not_found`.")


class Problem(BaseModel):
    """RFC 9457 problem details (`application/problem+json`)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[ProblemField] | None = None
    hint: str | None = None


class CatalogModel(BaseModel):
    name: str
    weights: str = Field(description="What to pass as `model.weights`.")
    source: Literal["bundled", "checkpoint", "timm", "random", "precomputed", "hf"]
    available: bool = Field(description="Whether these weights can be loaded on this server now.")
    detail: str | None = None


class CatalogModels(BaseModel):
    items: list[CatalogModel]
    truncated: bool = False


class CatalogDataset(BaseModel):
    spec: str = Field(description="What to pass as `dataset.spec` (a scheme when it ends with ':').")
    available: bool
    classes: int | None = None
    detail: str | None = None
    image_px: int | None = Field(None, description="The side of its images in pixels, when all share one.")
    suggested_image_size: int | None = Field(
        None, description="An `image_size` that suits these images (64 for images under 64 px); null: the "
        "model's own.")


class CatalogDatasets(BaseModel):
    items: list[CatalogDataset]


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


class DatasetOut(BaseModel):
    """An uploaded dataset (`POST /v1/datasets`): name it in a job as `{"dataset": {"spec": "upload:<id>"}}`."""

    id: str = Field(description="The file's sha256 (64 hex digits): the same file uploaded twice is one upload.",
                    examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"])
    spec: str = Field(description="The dataset spec a job names it by: `upload:<id>`.")
    filename: str = Field(description="The name it was uploaded under (its extension names the format).")
    format: Literal["npz", "parquet", "safetensors"]
    size_bytes: int
    sha256: str = Field(description="sha256 of the file's bytes (equal to `id`).")
    created_at: dt.datetime

    @classmethod
    def of(cls, row: DatasetUpload) -> DatasetOut:
        return cls(id=row.id, spec=spec_of(row.id), filename=row.filename, format=row.format,  # type: ignore[arg-type]
                   size_bytes=row.size_bytes, sha256=row.id, created_at=as_utc(row.created_at))  # type: ignore[arg-type]


class DatasetList(BaseModel):
    items: list[DatasetOut]
    next_page_token: str | None = Field(None, description="Pass as `page_token` for the next page; null at the end.")
