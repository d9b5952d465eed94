"""The route parameters and error declarations several routers share: the problem+json response entry,
the job id, and the δ / δ-mode / criterion of a read. δ itself is defaulted and range-checked by the
core's :func:`service.core.deltas.resolve_delta` (its bounds are only *declared* here, for the schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path, Query

from service.api.limits import MAX_QUERY_VALUES
from service.api.schemas import Problem

# The body is problem+json: its schema is declared there (first), so generated clients parse errors as Problem.
PROBLEM = {
    "model": Problem,
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}

JobId = Annotated[str, Path(description="The job's id (a UUID).", examples=["6f1c2b8e-3f7a-4d1e-9c55-2b0c7d1e9a01"])]

_DELTA_SCHEMA = {"minimum": 0, "exclusiveMaximum": 1}

LayerQ = Annotated[
    str | None,
    Query(min_length=1, max_length=200, description="A layer sweep: answer for this layer alone (δ relative to its "
          "own full layer); default: the (layer, k) across the job's layers."),
]
DeltaQ = Annotated[
    float | None,
    Query(description="Tolerated loss, in [0, 1); default: the job's first δ (several datasets: their shared "
          "first δ).", json_schema_extra={"anyOf": [{"type": "number", **_DELTA_SCHEMA}, {"type": "null"}]},
          examples=[0.01]),
]
DeltaModeQ = Annotated[Literal["relative", "absolute"] | None, Query(description="Default: the job's delta_mode.")]
CriterionQ = Annotated[Literal["mean", "worst_seed"] | None, Query(description="Default: the job's criterion.")]
PlotDeltas = Annotated[
    list[float] | None,
    Query(
        alias="delta",
        max_length=MAX_QUERY_VALUES,
        json_schema_extra={"items": {"type": "number", **_DELTA_SCHEMA}},
        description=f"Mark f* for this δ (repeatable, at most {MAX_QUERY_VALUES} times: "
        "`?delta=0.01&delta=0.05`); default: the job's own δs.",
        examples=[[0.01, 0.05]],
    ),
]
