"""/v1/recommendations: the answer for a model and dataset, from their latest succeeded job."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from service.api.deps import OwnerDep, SessionDep
from service.api.errors import ProblemError
from service.api.routes.jobs import PROBLEM, check_delta
from service.api.schemas import RecommendationOut
from service.api.sessions import ShortSessionRoute
from service.core import queries, results

router = APIRouter(prefix="/v1/recommendations", tags=["recommendations"], route_class=ShortSessionRoute)


@router.get(
    "",
    response_model=RecommendationOut,
    response_model_by_alias=True,
    summary="Recommendation from the latest succeeded job on a model and dataset",
    responses={
        404: {**PROBLEM, "description": "No succeeded job for that model and dataset (with a hint)"},
        422: {**PROBLEM, "description": "Missing or invalid parameter"},
    },
)
def latest_recommendation(
    session: SessionDep,
    owner: OwnerDep,
    model: Annotated[str, Query(min_length=1, description="timm model name.", examples=["tf_efficientnet_lite0"])],
    dataset: Annotated[str, Query(min_length=1, description="Dataset spec.", examples=["digits"])],
    delta: Annotated[
        float | None, Query(description="Tolerated loss; default: that job's first δ.", examples=[0.01])
    ] = None,
    delta_mode: Annotated[Literal["relative", "absolute"] | None, Query()] = None,
    criterion: Annotated[Literal["mean", "worst_seed"] | None, Query()] = None,
    weights: Annotated[str | None, Query(description="Only jobs that used these weights.")] = None,
) -> RecommendationOut:
    job = queries.latest_succeeded(session, owner, model, dataset, weights)
    if job is None:
        body = {"model": {"name": model, "weights": weights or "hub"}, "dataset": {"spec": dataset}}
        raise ProblemError(
            404,
            f"No succeeded job for model {model!r} on dataset {dataset!r}"
            + (f" with weights {weights!r}" if weights else "")
            + ".",
            slug="no-recommendation",
            title="No analysis yet",
            hint=f"Submit one: POST /v1/jobs with {json.dumps(body)}, then poll it until it succeeds.",
        )
    d = check_delta(delta, job.request.get("deltas") or [0.01])
    rec = results.recommend_for(session, job, delta=d, delta_mode=delta_mode, criterion=criterion)
    return RecommendationOut.of(rec, job)
