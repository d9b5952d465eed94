"""/v1/jobs/{id}/artifact: the subset head for any δ as .safetensors, and its JSON model card (issue 12); for a
retrieval job the kept dimensions only, no head (issue 20)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse

from service.api.cache import etag_matches
from service.api.deps import OwnerDep, SessionDep, SettingsDep
from service.api.params import PROBLEM, CriterionQ, DeltaModeQ, DeltaQ, JobId, LayerQ
from service.core import artifacts, queries
from service.core.deltas import resolve_delta

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

OCTET_STREAM = "application/octet-stream"

MethodQ = Annotated[
    Literal["random_subset", "first_k", "pca", "random_projection"],
    Query(description="Which reduction: the method's fewest dimensions within δ (`methods` of the recommendation); "
          "pca and random_projection carry a `projection` (d × k) and `offset` (d) tensor."),
]
FormatQ = Annotated[
    Literal["safetensors", "onnx"],
    Query(alias="format", description="safetensors, or an ONNX graph (opset 17: Gather [+ Sub + MatMul] + MatMul "
          "+ Add; input `features` N × d float32, output `logits` N × C)."),
]
IfNoneMatch = Annotated[
    str | None, Header(alias="If-None-Match", description="An ETag from an earlier answer: 304 when unchanged.")
]


def _errors(ok: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {
        200: ok,
        304: {"description": "Not Modified: the If-None-Match ETag is this artifact's"},
        404: {**PROBLEM, "description": "No such job"},
        409: {**PROBLEM, "description": "Not succeeded (yet), or no statistics were kept for it (the reason says why)"},
        410: {**PROBLEM, "description": "Its statistics file is gone from the artifact store"},
        422: {**PROBLEM, "description": "δ out of range (names `delta`), or a probe that cannot give a head "
              "(logistic; names `probe`), or a method the job did not run (names `method`)"},
    }


def _plan(session: SessionDep, owner: str, job_id: str, delta: float | None, delta_mode: str | None,
          criterion: str | None, method: str = "random_subset", fmt: str = "safetensors",
          layer: str | None = None) -> artifacts.ArtifactPlan:
    job = queries.get_job(session, job_id, owner)
    d = resolve_delta(delta, job.request.get("deltas"))
    return artifacts.plan_artifact(session, job, delta=d, delta_mode=delta_mode, criterion=criterion, method=method,
                                   fmt=fmt, layer=layer)


@router.get(
    "/{job_id}/artifact",
    response_class=Response,
    summary="The subset head for a δ (.safetensors)",
    responses=_errors({
        "content": {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
        "description": "One .safetensors file: `indices` (int64, the kept neurons in channel order), `weight` "
        "(k × C) and `bias` (C), so that `logits = x_raw[:, indices] @ weight + bias` on the layer's raw output; "
        "the metadata (model, weights hash, layer, input transform, dataset, recommendation, the subset's own "
        "test accuracy) in its header. Load it with `redundancy.deploy.load_artifact`. A retrieval job's artifact "
        "has no head: `indices` (and `projection` for pca / random_projection) and the metric, score and full_score "
        "in its metadata; `redundancy.deploy.reducer(art)` cuts full embeddings to the kept dimensions.",
        "headers": {"ETag": {"description": "Same job, statistics, recommendation and engine → same ETag.",
                             "schema": {"type": "string"}}},
    }),
)
def get_artifact(
    job_id: JobId,
    session: SessionDep,
    owner: OwnerDep,
    settings: SettingsDep,
    delta: DeltaQ = None,
    delta_mode: DeltaModeQ = None,
    criterion: CriterionQ = None,
    method: MethodQ = "random_subset",
    fmt: FormatQ = "safetensors",
    layer: LayerQ = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Fitted from the job's kept layer statistics with the answer's probe and λ (the seed chosen by its
    training-side selection score), for a stored δ or any new one; built once per ETag. A layer sweep: on the
    answer's layer, or with `layer=` on that swept layer."""
    plan = _plan(session, owner, job_id, delta, delta_mode, criterion, method, fmt, layer)
    headers = {"ETag": f'"{plan.etag}"', "Cache-Control": "private, no-cache"}
    if etag_matches(if_none_match, f'"{plan.etag}"'):
        return Response(status_code=304, headers=headers)
    path = artifacts.materialise(plan, settings.stats_cache_dir)
    headers["Content-Disposition"] = f'attachment; filename="{plan.filename}"'
    return Response(content=path.read_bytes(), media_type=OCTET_STREAM, headers=headers)


@router.get(
    "/{job_id}/artifact/card",
    response_class=JSONResponse,
    summary="The model card of the subset head for a δ (JSON)",
    responses=_errors({
        "content": {"application/json": {"schema": {"type": "object"}}},
        "description": "The artifact's metadata, its file name and sha256, tensor shapes, usage, and what the "
        "indices promise.",
    }),
)
def get_artifact_card(
    job_id: JobId,
    session: SessionDep,
    owner: OwnerDep,
    settings: SettingsDep,
    delta: DeltaQ = None,
    delta_mode: DeltaModeQ = None,
    criterion: CriterionQ = None,
    method: MethodQ = "random_subset",
    layer: LayerQ = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    plan = _plan(session, owner, job_id, delta, delta_mode, criterion, method, layer=layer)
    etag = f"card-{plan.etag}"
    headers = {"ETag": f'"{etag}"', "Cache-Control": "private, no-cache"}
    if etag_matches(if_none_match, f'"{etag}"'):
        return Response(status_code=304, headers=headers)
    built = artifacts.materialise(plan, settings.stats_cache_dir)
    return JSONResponse(artifacts.card_of(built), headers=headers)
