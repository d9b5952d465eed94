"""One answer for several tasks: the smallest `k` that keeps every dataset within δ of its full layer.

Subsets are drawn from (master seed, d, k, seed, `subsets`) only (`draw_subset`), so with the same
model, weights, layer, master seed and `subsets` every dataset probed the same indices at each
`(k, seed)`: one index set serves all of them. Pure functions over stored curves; the service calls them.

The answer is the smallest `k` tested on every dataset whose criterion statistic (seed mean, or worst
seed) reaches each dataset's own threshold; the full layer when none below it does. The **binding**
dataset is the one that rules out the next smaller common `k` (the largest shortfall there, if
several fail); when the answer is the smallest common `k`, it is the dataset with the least margin.
Each dataset's fairness at that `k` is the single-task answer's (`advice.fairness_at`: per seed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field

from redundancy.advice.recommend import fairness_at, summarize, threshold
from redundancy.advice.savings import Savings, savings
from redundancy.config import Criterion, DeltaMode
from redundancy.errors import IncompatibleTasksError
from redundancy.report import CurvePoint, Fairness, FractionSummary, Report

_EPS = 1e-12


@dataclass(frozen=True)
class TaskCurve:
    """What the multi-task answer needs from one dataset's analysis."""

    curve: Sequence[CurvePoint]
    classes: list[str]
    d: int
    model: str
    weights_identity: str
    layer: str
    master_seed: int
    subsets: str = "independent"  # how the subsets were drawn (`AnalysisConfig.subsets`)

    @classmethod
    def from_report(cls, report: Report) -> TaskCurve:
        return cls(
            curve=report.curve, classes=report.fairness_groups, d=report.model.d, model=report.model.name,
            weights_identity=report.model.weights_identity, layer=report.model.layer, master_seed=report.config.seed,
            subsets=report.config.subsets,
        )


class TaskAtK(BaseModel):
    dataset: str
    metric: str = Field("accuracy", description="What `accuracy` measures for this dataset: accuracy "
                        "(classification) or its retrieval metric (ndcg@10, recall@10, map@10, top10_overlap).")
    accuracy: float = Field(description="The criterion's accuracy at the common k (seed mean or worst seed).")
    full_accuracy: float
    threshold: float
    margin: float = Field(description="accuracy − threshold at the common k.")
    own_k: int = Field(description="This dataset's own smallest passing k on the common grid.")
    fairness: Fairness
    savings: Savings


class MultiTaskRecommendation(BaseModel):
    delta: float
    mode: DeltaMode
    criterion: Criterion
    k: int
    d: int
    fraction: float
    met_below_full: bool
    binding: str = Field(description="The dataset that rules out a smaller k (or, at the smallest k, the closest).")
    tasks: list[TaskAtK]


_IDENTITY_FIELDS: tuple[tuple[str, str], ...] = (
    ("model", "model.name"), ("weights_identity", "model.weights"), ("layer", "layer"), ("d", "d"),
    ("master_seed", "seed"), ("subsets", "subsets"),
)


def check_compatible(tasks: Mapping[str, TaskCurve]) -> None:
    """Refuse curves that do not share one subset draw: another model, weights, layer, width or seed."""
    if not tasks:
        raise IncompatibleTasksError("no datasets given", field="dataset")
    first_name, first = next(iter(tasks.items()))
    for attr, field in _IDENTITY_FIELDS:
        odd = [name for name, t in tasks.items() if getattr(t, attr) != getattr(first, attr)]
        if odd:
            raise IncompatibleTasksError(
                f"{', '.join(odd)} used {field} {getattr(tasks[odd[0]], attr)!r}, {first_name} used "
                f"{getattr(first, attr)!r}: one subset cannot serve them", field=field,
            )


def _stat(s: FractionSummary, criterion: Criterion) -> float:
    return s.accuracy_mean if criterion == "mean" else s.accuracy_min


def recommend_multitask(
    tasks: Mapping[str, TaskCurve], delta: float, mode: DeltaMode = "relative", criterion: Criterion = "mean"
) -> MultiTaskRecommendation:
    """The smallest `k` meeting δ on every dataset, per-dataset accuracy and fairness there, and the
    binding dataset (see the module docstring)."""
    check_compatible(tasks)
    d = next(iter(tasks.values())).d
    by_k = {name: {s.k: s for s in summarize(t.curve)} for name, t in tasks.items()}
    for name, table in by_k.items():
        if d not in table:
            raise IncompatibleTasksError(f"{name}'s curve has no full-layer point (k = {d})", field="curve")
    common = sorted(set.intersection(*(set(t) for t in by_k.values())))
    bars = {name: threshold(table[d].accuracy_mean, delta, mode) for name, table in by_k.items()}

    def margin(name: str, k: int) -> float:
        return _stat(by_k[name][k], criterion) - bars[name]

    def passes(k: int) -> bool:
        return all(margin(n, k) >= -_EPS for n in tasks)

    k = next(k for k in common if passes(k) or k == d)
    below = [c for c in common if c < k]
    if below:
        prev = below[-1]
        binding = min(tasks, key=lambda n: margin(n, prev))
    else:
        binding = min(tasks, key=lambda n: margin(n, k))
    rows = []
    for name, t in tasks.items():
        full, at = by_k[name][d], by_k[name][k]
        own = next(c for c in common if margin(name, c) >= -_EPS or c == d)
        rows.append(
            TaskAtK(
                dataset=name, metric=next((p.metric for p in t.curve if p.k == d), "accuracy"),
                accuracy=_stat(at, criterion), full_accuracy=full.accuracy_mean, threshold=bars[name],
                margin=margin(name, k), own_k=own,
                fairness=fairness_at(t.curve, t.classes, d, k),
                savings=savings(d, k, len(t.classes)),
            )
        )
    fraction = min(by_k[n][k].fraction for n in tasks) if k < d else 1.0
    return MultiTaskRecommendation(
        delta=delta, mode=mode, criterion=criterion, k=k, d=d, fraction=fraction, met_below_full=k < d,
        binding=binding, tasks=rows,
    )
