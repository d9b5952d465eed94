"""/v1/jobs: submit, poll, list, cancel, delete, result and per-job recommendation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from redundancy.config import MAX_NAME_CHARS, MAX_PATH_CHARS
from redundancy.plots import render
from redundancy.report import Report
from service.api.cache import cached
from service.api.deploy_params import DeployDep
from service.api.deps import OwnerDep, QueueDep, SessionDep, SettingsDep
from service.api.limits import MAX_QUERY_VALUES
from service.api.openapi import binary_response, negotiate
from service.api.params import PROBLEM, CriterionQ, DeltaModeQ, DeltaQ, JobId, LayerQ, PlotDeltas
from service.api.schemas import (
    DEMO_JOB,
    LOGISTIC_JOB_EXAMPLE,
    SMALL_JOB_EXAMPLE,
    JobCreate,
    JobList,
    JobOut,
    RecommendationOut,
)
from service.api.sessions import ShortSessionRoute
from service.api.validation import check_config
from service.core import lifecycle, queries, results, submission, uploads
from service.core.deltas import resolve_delta
from service.core.status import JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=ShortSessionRoute)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    summary="Submit an analysis job",
    responses={
        400: {**PROBLEM, "description": "The body is not JSON (`detail` gives the position)"},
        409: {**PROBLEM, "description": "Idempotency-Key reused with another body"},
        413: {**PROBLEM, "description": "Body larger than ADVISOR_MAX_BODY_BYTES"},
        415: {**PROBLEM, "description": "Body not sent as application/json"},
        422: {**PROBLEM, "description": "Invalid request (names the field)"},
        429: {**PROBLEM, "description": "Over the request rate, or ADVISOR_MAX_ACTIVE_JOBS queued + running "
              "jobs already; see Retry-After"},
    },
)
def submit_job(
    body: Annotated[
        JobCreate,
        Body(
            openapi_examples={
                "demo": {
                    "summary": "The bundled demo: EfficientNet-Lite0 (ImageNet) × digits",
                    "value": DEMO_JOB,
                },
                "small": {"summary": "A few-seconds CPU job (random weights)", "value": SMALL_JOB_EXAMPLE},
                "logistic": {
                    "summary": "Logistic probes, all baselines, debiased CKA, refinement and bootstrap CIs",
                    "value": LOGISTIC_JOB_EXAMPLE,
                },
            }
        ),
    ],
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    owner: OwnerDep,
    queue: QueueDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="Same key + same body → the same job; same key + other body → 409.",
        ),
    ] = None,
) -> JobOut:
    """Validate, persist a queued job and enqueue it. Answers 202 with the job and a Location header;
    poll `GET /v1/jobs/{id}`."""
    check_config(body, settings)  # every bad field at once, the callback URL and MLflow option included
    uploads.check_reference(session, owner, body.dataset.spec)
    job, created = submission.submit(session, body.analysis_config(), owner=owner, idempotency_key=idempotency_key,
                                     callback_url=body.callback_url, queue=queue, settings=settings,
                                     mlflow=body.mlflow.model_dump() if body.mlflow else None,
                                     device=body.device, device_fallback_after=body.device_fallback_after)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobOut.of(job)


@router.get(
    "",
    response_model=JobList,
    summary="List jobs (newest first)",
    responses={
        400: {**PROBLEM, "description": "Bad page_token"},
        422: {**PROBLEM, "description": "Bad filter"},
    },
)
async def list_jobs(
    request: Request,
    owner: OwnerDep,
    page_size: Annotated[int, Query(ge=1, le=200, description="Items per page.")] = 20,
    page_token: Annotated[
        str | None, Query(max_length=512, description="`next_page_token` of the previous page.")
    ] = None,
    status_: Annotated[JobStatus | None, Query(alias="status", description="Only jobs in this status.")] = None,
    model: Annotated[
        str | None, Query(max_length=MAX_NAME_CHARS, description="Only jobs on this timm model name.")
    ] = None,
    dataset: Annotated[
        str | None, Query(max_length=MAX_PATH_CHARS, description="Only jobs on this dataset spec.")
    ] = None,
) -> Response:
    """Pages of finished jobs (`status=succeeded|failed|cancelled`) are cached for a moment
    (`ADVISOR_LIST_CACHE_TTL`); every page carries an `ETag` (304 on `If-None-Match`)."""

    def build(session: Session) -> Response:
        rows, token = queries.list_job_rows(
            queries.one_statement_read(session),
            owner,
            page_size=page_size,
            page_token=page_token,
            status=status_,
            model=model,
            dataset=dataset,
        )
        return Response(request.app.state.job_pages.page(rows, token), media_type="application/json")

    ttl = request.app.state.settings.list_cache_ttl if status_ is not None and status_.finished else 0.0
    return await cached(request, owner, None, ttl, build)


def _json(model: BaseModel) -> Response:
    return Response(model.model_dump_json(by_alias=True), media_type="application/json")


async def _finished_read(
    request: Request, owner: str, job_id: str, build: Callable[[Session], Response]
) -> Response:
    """A read of a succeeded job's stored result: served from the in-process cache, with an ETag."""
    return await cached(request, owner, job_id, request.app.state.settings.result_cache_ttl, build)


@router.get(
    "/{job_id}",
    response_model=JobOut,
    summary="Poll a job",
    responses={404: {**PROBLEM, "description": "No such job"}},
)
def get_job(job_id: JobId, session: SessionDep, owner: OwnerDep) -> JobOut:
    return JobOut.of(queries.get_job(session, job_id, owner))


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a job",
    responses={
        202: {"model": JobOut, "description": "Running: it stops at its next checkpoint and ends cancelled"},
        404: {**PROBLEM, "description": "No such job"},
        409: {**PROBLEM, "description": "Already succeeded or failed"},
    },
)
def cancel_job(job_id: JobId, response: Response, session: SessionDep, owner: OwnerDep) -> JobOut:
    """A queued job is cancelled at once (200) and never starts. A running job is flagged (202); the
    worker sees the flag within about a second and stops at its next checkpoint."""
    job = lifecycle.cancel(session, job_id, owner)
    if job.status == JobStatus.RUNNING:
        response.status_code = status.HTTP_202_ACCEPTED
    return JobOut.of(job)


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a finished job and its results",
    responses={
        404: {**PROBLEM, "description": "No such job"},
        409: {**PROBLEM, "description": "Queued or running: cancel it first"},
    },
)
def delete_job(job_id: JobId, request: Request, session: SessionDep, owner: OwnerDep) -> Response:
    lifecycle.delete(session, job_id, owner, request.app.state.settings)
    request.app.state.response_cache.drop_job(owner, job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{job_id}/result",
    summary="The engine's full report (curve included)",
    response_class=JSONResponse,
    responses={
        200: {"model": Report, "description": "The report exactly as the engine produced it"},
        404: {**PROBLEM, "description": "No such job"},
        409: {**PROBLEM, "description": "Not succeeded (yet)"},
    },
)
async def get_result(job_id: JobId, request: Request, owner: OwnerDep) -> Response:
    """Served as stored (a historical record), so reports written by an older engine version stay
    readable after the engine's schema grows. Cached, with an `ETag` (304 on `If-None-Match`)."""
    return await _finished_read(request, owner, job_id, lambda session: JSONResponse(
        results.load_report(session, queries.get_job(session, job_id, owner))))


@router.get(
    "/{job_id}/recommendation",
    response_model=RecommendationOut,
    response_model_by_alias=True,
    summary="Minimal neuron fraction within δ, and its fairness cost",
    responses={
        404: {**PROBLEM, "description": "No such job"},
        409: {**PROBLEM, "description": "Not succeeded (yet)"},
        422: {**PROBLEM, "description": "δ out of range"},
    },
)
async def get_recommendation(
    job_id: JobId,
    request: Request,
    owner: OwnerDep,
    deploy: DeployDep,
    delta: DeltaQ = None,
    delta_mode: DeltaModeQ = None,
    criterion: CriterionQ = None,
    layer: LayerQ = None,
) -> Response:
    """Answered from the stored curve for any δ; no probe is recomputed. A layer sweep: the (layer, k) across
    its layers, or with `layer=` that layer alone. Every method the job ran side by side,
    the verdict and storage; a budget and fairness limits when asked. Cached, with an `ETag`."""

    def build(session: Session) -> Response:
        job = queries.get_job(session, job_id, owner)
        d = resolve_delta(delta, job.request.get("deltas"))
        rec = results.recommend_for(session, job, delta=d, delta_mode=delta_mode, criterion=criterion,
                                    budget=deploy.budget, limits=deploy.limits, layer=layer)
        return _json(RecommendationOut.of(rec, job))

    return await _finished_read(request, owner, job_id, build)


PLOT_MEDIA_TYPES: dict[str, str] = {"png": "image/png", "svg": "image/svg+xml"}


async def _plot(request: Request, job_id: str, fmt: Literal["png", "svg"], owner: str,
                deltas: list[float] | None) -> Response:
    media_type = negotiate(request.headers.get("accept"), PLOT_MEDIA_TYPES[fmt])

    def build(session: Session) -> Response:
        job = queries.get_job(session, job_id, owner)
        wanted = [resolve_delta(d) for d in deltas] if deltas else None
        report = results.load_report(session, job)
        body = render(report, fmt, deltas=wanted)
        return Response(
            content=body,
            media_type=media_type,
            headers={"Content-Disposition": f'inline; filename="redundancy-{job.id}.{fmt}"'},
        )

    return await _finished_read(request, owner, job_id, build)


def _plot_responses(fmt: str) -> dict[int | str, dict[str, object]]:
    return {
        200: binary_response(
            PLOT_MEDIA_TYPES[fmt],
            f"The stored report rendered as {fmt.upper()}: accuracy (random subsets ± std, "
            "refinement probes, baselines, δ band and f*), CKA and per-class Gini against the fraction.",
        ),
        404: {**PROBLEM, "description": "No such job"},
        409: {**PROBLEM, "description": "Not succeeded (yet): queued, running, failed or cancelled"},
        422: {**PROBLEM, "description": f"δ out of range, or more than {MAX_QUERY_VALUES} of them"},
    }


@router.get(
    "/{job_id}/plot.png",
    response_class=Response,
    summary="Plot of the stored result (PNG)",
    responses=_plot_responses("png"),
)
async def get_plot_png(job_id: JobId, request: Request, owner: OwnerDep,
                       delta: PlotDeltas = None) -> Response:
    """Rendered from the stored report with `redundancy.plots.render`; no probe is recomputed."""
    return await _plot(request, job_id, "png", owner, delta)


@router.get(
    "/{job_id}/plot.svg",
    response_class=Response,
    summary="Plot of the stored result (SVG)",
    responses=_plot_responses("svg"),
)
async def get_plot_svg(job_id: JobId, request: Request, owner: OwnerDep,
                       delta: PlotDeltas = None) -> Response:
    """Rendered from the stored report with `redundancy.plots.render`; text stays text in the SVG."""
    return await _plot(request, job_id, "svg", owner, delta)
