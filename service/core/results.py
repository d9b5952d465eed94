"""A succeeded job's result: the engine's report split into rows (result, curve points, stored
recommendations) and read back; any other δ is answered from the stored curve, never recomputed."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from redundancy.advice.recommend import intervals_from_summary, recommend
from redundancy.report import CurvePoint, FractionSummary, LayerResult, QuantisedScore, Recommendation, Report
from redundancy.sweep import LayerCurve, across_layers, on_own_layer
from redundancy.verdict import Budget, FairnessLimits, complete
from service.core.errors import InvalidInput, NotSucceeded, ResultMissing
from service.core.models import CurvePointRow, Job, JobResult, RecommendationRow, utcnow
from service.core.status import JobStatus

CURVE_COLUMNS = ("fraction", "k", "seed", "accuracy", "per_class_accuracy", "cka", "lam", "kind")


def store_report(session: Session, job_id: str, report: Report) -> None:
    """Add the report's rows to ``session``; the caller commits them with the status change
    (:func:`service.core.lifecycle.succeed`)."""
    data = report.model_dump(mode="json", by_alias=True)
    curve = data.pop("curve")
    recs = data.pop("recommendations")
    session.add(
        JobResult(
            job_id=job_id,
            d=report.model.d,
            classes=report.fairness_groups,  # the fairness vector's names (retrieval: query deciles)
            full_accuracy=float(report.full_accuracy),
            report=data,
            created_at=utcnow(),
        )
    )
    session.add_all(
        CurvePointRow(
            job_id=job_id,
            position=i,
            **{c: p.get(c) for c in CURVE_COLUMNS if c != "kind"},
            kind=p.get("kind") or "random",
            extra={k: v for k, v in p.items() if k not in CURVE_COLUMNS} or None,
        )
        for i, p in enumerate(curve)
    )
    seen: set[tuple[float, str, str]] = set()
    for r in recs:
        key = (float(r["delta"]), r["mode"], r["criterion"])
        if key in seen:
            continue
        seen.add(key)
        session.add(
            RecommendationRow(
                job_id=job_id,
                delta=r["delta"],
                mode=r["mode"],
                criterion=r["criterion"],
                fraction=r["fraction"],
                k=r["k"],
                d=r["d"],
                dr=r["dr"],
                accuracy=r["accuracy"],
                full_accuracy=r["full_accuracy"],
                fairness=r["fairness"],
                payload=r,
            )
        )


def curve_of(session: Session, job_id: str) -> list[CurvePoint]:
    rows = session.scalars(
        sa.select(CurvePointRow).where(CurvePointRow.job_id == job_id).order_by(CurvePointRow.position)
    )
    out = []
    for r in rows:
        d: dict[str, Any] = {c: getattr(r, c) for c in CURVE_COLUMNS}
        d.update(r.extra or {})
        out.append(CurvePoint.model_validate(d))
    return out


def _result_of(session: Session, job: Job) -> JobResult:
    if job.status != JobStatus.SUCCEEDED:
        raise NotSucceeded(job.id, job.status)
    result = session.get(JobResult, job.id)
    if result is None:  # pragma: no cover - succeeded is written with its result in one transaction
        raise ResultMissing(job.id)
    return result


def load_report(session: Session, job: Job) -> dict[str, Any]:
    """The report as stored (a historical record: older engine versions' reports stay readable)."""
    result = _result_of(session, job)
    report = dict(result.report)
    report["curve"] = [p.model_dump(mode="json") for p in curve_of(session, job.id)]
    recs = session.scalars(
        sa.select(RecommendationRow).where(RecommendationRow.job_id == job.id).order_by(RecommendationRow.id)
    )
    report["recommendations"] = [r.payload for r in recs]
    return report


def recommend_for(
    session: Session, job: Job, *, delta: float, delta_mode: str | None, criterion: str | None,
    budget: Budget | None = None, limits: FairnessLimits | None = None, layer: str | None = None,
) -> Recommendation:
    """The engine's :func:`redundancy.advice.recommend.recommend` on the stored curve (never recomputes a probe),
    with every method, the verdict and storage (:func:`redundancy.verdict.complete`) and, when asked, the
    budget and fairness-limit answers; mode and criterion default to the job's own."""
    result = _result_of(session, job)
    mode = delta_mode or job.request.get("delta_mode") or "relative"
    criterion = criterion or job.request.get("criterion") or "mean"
    swept = [LayerResult.model_validate(x) for x in result.report.get("layers") or []]
    if len(swept) > 1:
        return _layer_answer(swept, list(result.classes), float(delta), mode, criterion, layer, limits, budget)
    own = (result.report.get("model") or {}).get("layer")
    if layer is not None and layer != own:
        raise InvalidInput("layer", f"{layer!r} was not probed by this job; its layer: {own}")
    row = session.scalar(sa.select(RecommendationRow).where(
        RecommendationRow.job_id == job.id, RecommendationRow.delta == float(delta),
        RecommendationRow.mode == mode, RecommendationRow.criterion == criterion))
    curve: list[CurvePoint] = []
    if row is not None:  # the engine's own answer as stored: it carries the paired bootstrap of
        # (subset − threshold) with the full layer resampled, which the curve alone cannot reproduce
        rec = Recommendation.model_validate(row.payload)
    else:
        curve = curve_of(session, job.id)
        rec = recommend(
            curve,
            list(result.classes),
            int(result.d),
            float(delta),
            mode=mode,  # type: ignore[arg-type]
            criterion=criterion,  # type: ignore[arg-type]
            intervals=stored_intervals(result.report),
        )
    if own and rec.layer is None:  # a single-layer job's answer names its layer (an older stored one too)
        rec = on_own_layer(rec, own)
    if not curve and (rec.verdict is None or budget is not None or limits is not None):
        curve = curve_of(session, job.id)  # an older stored answer, or a question the stored one cannot answer
    quantised = [QuantisedScore.model_validate(q) for q in result.report.get("quantised") or []]
    return complete(rec, curve, list(result.classes), limits=limits, budget=budget, quantised=quantised)


def _layer_answer(
    swept: list[LayerResult], classes: list[str], delta: float, mode: str, criterion: str, layer: str | None,
    limits: FairnessLimits | None, budget: Budget | None,
) -> Recommendation:
    """A layer sweep's answer from its stored per-layer curves (`redundancy.sweep.across_layers`); with `layer`,
    that layer alone, δ relative to its own full layer."""
    curves = [LayerCurve(x.layer, x.d, x.curve, intervals_from_summary(x.summary) or None) for x in swept]
    if layer is not None:
        pinned = [c for c in curves if c.layer == layer]
        if not pinned:
            names = ", ".join(c.layer for c in curves) or "none stored (a single-layer job of an older engine)"
            raise InvalidInput("layer", f"{layer!r} was not probed by this job; its layers: {names}")
        curves = pinned
    ref = next((i for i, x in enumerate(swept) if x.reference), 0) if layer is None else 0
    rec = across_layers(curves, classes, delta, mode, criterion, ref)  # type: ignore[arg-type]
    c = curves[[x.layer for x in curves].index(rec.layer)] if rec.layer else curves[0]
    return complete(rec, c.curve, classes, limits=limits, budget=budget)


def stored_intervals(report: dict[str, Any]) -> dict[int, tuple[float, float]] | None:
    """The bootstrap intervals by k that the engine stored in the report's summary (if any), read with
    the engine's own `intervals_from_summary`. Only the random-subset summary counts (the baselines live
    in `report["baselines"]`); a summary written before `kind` existed is random."""
    summary = [
        FractionSummary.model_validate(s)
        for s in report.get("summary") or []
        if s.get("kind", "random") == "random"
    ]
    return intervals_from_summary(summary) or None
