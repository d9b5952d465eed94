"""One answer for several datasets (issue 12): the smallest k meeting δ on every named dataset, from
each dataset's latest succeeded job on the same model, weights and layer
(`redundancy.deploy.recommend_multitask` on the stored curves; nothing is recomputed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from redundancy.deploy import IncompatibleTasksError, MultiTaskRecommendation, TaskCurve, recommend_multitask
from service.core import queries, results
from service.core.deltas import DEFAULT_DELTA, resolve_delta
from service.core.errors import InvalidInput, TasksIncompatible, TasksMissing
from service.core.models import Job, JobResult


def latest_jobs(
    session: Session, owner: str, model: str, datasets: Sequence[str], weights: str | None
) -> dict[str, Job]:
    """Each dataset's latest succeeded job on ``model`` (and ``weights``, when given); a dataset named
    twice is an :class:`InvalidInput`, datasets without one are a :class:`TasksMissing` naming them all."""
    twice = sorted({d for d in datasets if list(datasets).count(d) > 1})
    if twice:
        raise InvalidInput("dataset", f"named more than once: {', '.join(twice)}")
    jobs = {d: queries.latest_succeeded(session, owner, model, d, weights) for d in datasets}
    missing = [d for d, j in jobs.items() if j is None]
    if missing:
        raise TasksMissing(missing, model, weights)
    return {d: j for d, j in jobs.items() if j is not None}


def task_curve(session: Session, job: Job) -> TaskCurve:
    """What the multi-task answer needs from one stored job."""
    result = session.get(JobResult, job.id)
    assert result is not None  # a succeeded job is written with its result
    model = result.report.get("model") or {}
    return TaskCurve(
        curve=results.curve_of(session, job.id), classes=list(result.classes), d=int(result.d),
        model=str(model.get("name", job.model_name)), weights_identity=str(model.get("weights_identity", "")),
        layer=str(model.get("layer", "")), master_seed=int((result.report.get("config") or {}).get("seed", 0)),
        subsets=str((result.report.get("config") or {}).get("subsets", "independent")),
    )


def _common(jobs: dict[str, Job], key: str, field: str, fallback: Any) -> Any:
    """The jobs' shared default for a parameter left out; when they differ, the caller must pass it."""
    values = {d: (j.request.get(key) or [fallback])[0] if key == "deltas" else j.request.get(key) or fallback
              for d, j in jobs.items()}
    if len(set(values.values())) > 1:
        shown = ", ".join(f"{d}: {v}" for d, v in values.items())
        raise InvalidInput(field, f"required: the jobs' own defaults differ ({shown})")
    return next(iter(values.values()))


def recommend_for_datasets(
    session: Session,
    owner: str,
    *,
    model: str,
    datasets: Sequence[str],
    weights: str | None,
    delta: float | None,
    delta_mode: str | None,
    criterion: str | None,
) -> tuple[MultiTaskRecommendation, dict[str, Job]]:
    """The multi-task answer and the job behind each dataset. Datasets without a succeeded job:
    :class:`TasksMissing`; jobs that cannot share one subset: :class:`TasksIncompatible` naming them."""
    given = resolve_delta(delta) if delta is not None else None  # a bad δ is refused before any lookup
    jobs = latest_jobs(session, owner, model, datasets, weights)
    d = given if given is not None else float(_common(jobs, "deltas", "delta", DEFAULT_DELTA))
    mode = delta_mode or _common(jobs, "delta_mode", "delta_mode", "relative")
    crit = criterion or _common(jobs, "criterion", "criterion", "mean")
    tasks = {name: task_curve(session, job) for name, job in jobs.items()}
    try:
        answer = recommend_multitask(tasks, d, mode, crit)
    except IncompatibleTasksError as exc:
        raise TasksIncompatible(exc.field or "dataset", exc.message, {n: j.id for n, j in jobs.items()}) from exc
    return answer, jobs
