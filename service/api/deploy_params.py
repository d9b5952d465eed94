"""The deployment questions a recommendation endpoint also answers (issue 22): a budget (`max_dims`,
`max_bytes` at a `dtype`) and fairness as a hard limit (`max_worst_class_drop`, `max_gini_increase`).
One dependency, shared by `/v1/jobs/{id}/recommendation` and `/v1/recommendations`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Query

from redundancy.verdict import Budget, FairnessLimits


@dataclass(frozen=True)
class DeployQuestions:
    budget: Budget | None
    limits: FairnessLimits | None

    @property
    def asked(self) -> bool:
        return self.budget is not None or self.limits is not None


def deploy_questions(
    max_dims: Annotated[int | None, Query(ge=1, le=1_000_000, description="Budget: at most this many kept "
                                          "dimensions; answers the best score each method reaches within it.")] = None,
    max_bytes: Annotated[int | None, Query(ge=1, le=1 << 40, description="Budget: at most this many bytes per "
                                           "stored vector at `dtype`.")] = None,
    dtype: Annotated[Literal["float32", "float16", "int8"], Query(
        description="Storage dtype for `max_bytes` (int8: per-dimension scalar quantisation, measured at the "
        "recommended k).")] = "float32",
    max_worst_class_drop: Annotated[float | None, Query(ge=0, le=1, description="Fairness limit: the worst "
                                                        "class may lose at most this much (absolute).")] = None,
    max_gini_increase: Annotated[float | None, Query(ge=0, le=1, description="Fairness limit: the Gini of "
                                                     "per-class accuracy may rise at most this much.")] = None,
) -> DeployQuestions:
    budget = Budget(max_dims, max_bytes, dtype) if max_dims is not None or max_bytes is not None else None
    limits = (FairnessLimits(max_worst_class_drop, max_gini_increase)
              if max_worst_class_drop is not None or max_gini_increase is not None else None)
    return DeployQuestions(budget, limits)


DeployDep = Annotated[DeployQuestions, Depends(deploy_questions)]
