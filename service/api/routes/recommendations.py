"""/v1/recommendations: the answer for a model and dataset, from their latest succeeded job; for several
datasets, the smallest k that meets δ on every one of them (issue 12)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query

from redundancy.config import MAX_NAME_CHARS, MAX_PATH_CHARS
from service.api.deploy_params import DeployDep, DeployQuestions
from service.api.deps import OwnerDep, SessionDep
from service.api.errors import ProblemError, validation_problem
from service.api.limits import MAX_QUERY_VALUES
from service.api.params import PROBLEM, CriterionQ, DeltaModeQ, DeltaQ
from service.api.schemas import MultiTaskRecommendationOut, RecommendationOut
from service.api.sessions import ShortSessionRoute
from service.core import multitask, queries, results
from service.core.deltas import resolve_delta

router = APIRouter(prefix="/v1/recommendations", tags=["recommendations"], route_class=ShortSessionRoute)


@router.get(
    "",
    response_model=RecommendationOut | MultiTaskRecommendationOut,
    response_model_by_alias=True,
    summary="Recommendation from the latest succeeded job on a model and dataset (or several datasets)",
    responses={
        404: {**PROBLEM, "description": "No succeeded job for that model and dataset (with a hint)"},
        409: {**PROBLEM, "description": "Several datasets: some have no succeeded job (named in `datasets`)"},
        422: {**PROBLEM, "description": "Missing or invalid parameter; several datasets: jobs that cannot share "
              "one subset (other weights, layer, width or seed; named in `jobs`)"},
    },
)
def latest_recommendation(
    session: SessionDep,
    owner: OwnerDep,
    deploy: DeployDep,
    model: Annotated[str, Query(min_length=1, max_length=MAX_NAME_CHARS, description="timm model name.",
                                examples=["tf_efficientnet_lite0"])],
    dataset: Annotated[
        list[str],
        Query(max_length=MAX_QUERY_VALUES, description="Dataset spec. Repeat it (`&dataset=A&dataset=B`) for the "
              "smallest k that meets δ on "
              "every named dataset (a `MultiTaskRecommendationOut`).", examples=[["digits"]]),
    ],
    delta: DeltaQ = None,
    delta_mode: DeltaModeQ = None,
    criterion: CriterionQ = None,
    weights: Annotated[
        str | None, Query(max_length=MAX_PATH_CHARS, description="Only jobs that used these weights.")
    ] = None,
) -> RecommendationOut | MultiTaskRecommendationOut:
    if not dataset or any(not d for d in dataset):
        raise validation_problem("dataset", "give at least one non-empty dataset spec", "query")
    if any(len(d) > MAX_PATH_CHARS for d in dataset):
        raise validation_problem("dataset", f"a dataset spec is at most {MAX_PATH_CHARS} characters", "query")
    if len(dataset) > 1:
        if deploy.asked:
            raise validation_problem("max_dims" if deploy.budget else "max_worst_class_drop",
                                     "budgets and fairness limits are answered for one dataset at a time", "query")
        answer, jobs = multitask.recommend_for_datasets(
            session, owner, model=model, datasets=dataset, weights=weights, delta=delta, delta_mode=delta_mode,
            criterion=criterion,
        )
        return MultiTaskRecommendationOut.of(answer, model, jobs)
    return _one_dataset(session, owner, model, dataset[0], delta, delta_mode, criterion, weights, deploy)


def _one_dataset(
    session: SessionDep, owner: str, model: str, dataset: str, delta: float | None, delta_mode: str | None,
    criterion: str | None, weights: str | None, deploy: DeployQuestions,
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
    d = resolve_delta(delta, job.request.get("deltas"))
    rec = results.recommend_for(session, job, delta=d, delta_mode=delta_mode, criterion=criterion,
                                budget=deploy.budget, limits=deploy.limits)
    return RecommendationOut.of(rec, job)
