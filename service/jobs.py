"""Job bookkeeping shared by the routes, the worker and the maintenance loop.

Postgres (or the embedded SQLite file) is the truth about a job. Every state change is a conditional
``UPDATE ... WHERE status = ...`` so that the API, the worker and a second worker racing on a
duplicate message cannot both win.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from redundancy.config import AnalysisConfig
from redundancy.report import CurvePoint, Recommendation
from service.api.errors import ProblemError, validation_problem
from service.db.models import (
    FINISHED_STATUSES,
    CurvePointRow,
    Job,
    JobResult,
    RecommendationRow,
    utcnow,
)
from service.schemas import JobError, JobLinks, JobOut, RecommendationOut

log = logging.getLogger("service.jobs")

CURVE_COLUMNS = ("fraction", "k", "seed", "accuracy", "per_class_accuracy", "cka", "lam", "kind")


def as_utc(t: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if t is None:
        return None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def job_links(job_id: str) -> JobLinks:
    base = f"/v1/jobs/{job_id}"
    return JobLinks(
        self=base,
        result=f"{base}/result",
        recommendation=f"{base}/recommendation",
        cancel=f"{base}/cancel",
        plot_png=f"{base}/plot.png",
        plot_svg=f"{base}/plot.svg",
    )


def to_out(job: Job) -> JobOut:
    error = None
    if job.error_code:
        error = JobError(code=job.error_code, message=job.error_message or "", field=job.error_field)
    return JobOut(
        id=job.id,
        status=job.status,  # type: ignore[arg-type]
        stage=job.stage,
        progress=max(0.0, min(1.0, float(job.progress or 0.0))),
        message=job.message,
        created_at=as_utc(job.created_at),  # type: ignore[arg-type]
        started_at=as_utc(job.started_at),
        finished_at=as_utc(job.finished_at),
        cancel_requested=bool(job.cancel_requested),
        error=error,
        config_hash=job.config_hash,
        attempts=job.attempts or 0,
        request=job.request,
        links=job_links(job.id),
    )


# ---------------------------------------------------------------------------------------------
# create / read


def create_job(
    session: Session, config: AnalysisConfig, *, owner: str, idempotency_key: str | None
) -> tuple[Job, bool]:
    """Persist a queued job. Returns (job, created); created is False for an idempotent replay."""
    chash = config.config_hash()
    if idempotency_key is not None:
        existing = _by_key(session, owner, idempotency_key)
        if existing is not None:
            return _replay(existing, chash, idempotency_key), False
    job = Job(
        id=str(uuid.uuid4()),
        owner=owner,
        status="queued",
        progress=0.0,
        request=config.model_dump(mode="json"),
        config_hash=chash,
        model_name=config.model.name,
        dataset_spec=config.dataset.spec,
        idempotency_key=idempotency_key,
        cancel_requested=False,
        created_at=utcnow(),
        enqueue_count=0,
        attempts=0,
    )
    session.add(job)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = _by_key(session, owner, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return _replay(existing, chash, idempotency_key or ""), False
    return job, True


def _by_key(session: Session, owner: str, key: str) -> Job | None:
    return session.scalar(sa.select(Job).where(Job.owner == owner, Job.idempotency_key == key))


def _replay(existing: Job, chash: str, key: str) -> Job:
    if existing.config_hash != chash:
        raise ProblemError(
            409,
            f"Idempotency-Key {key!r} was already used with a different request body (job {existing.id}).",
            slug="idempotency-key-reused",
            title="Idempotency key reused",
            job_id=existing.id,
        )
    return existing


def mark_enqueued(session: Session, job_id: str) -> None:
    session.execute(
        sa.update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(enqueued_at=utcnow(), enqueue_count=Job.enqueue_count + 1)
    )
    session.commit()


def get_job(session: Session, job_id: str, owner: str) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.owner != owner:
        raise ProblemError(
            404,
            f"No job with id {job_id!r}.",
            slug="job-not-found",
            title="Job not found",
            hint="List your jobs with GET /v1/jobs.",
        )
    return job


# ---------------------------------------------------------------------------------------------
# listing with keyset pagination


def _encode_token(created_at: dt.datetime, job_id: str) -> str:
    raw = json.dumps({"t": as_utc(created_at).isoformat(), "i": job_id}, separators=(",", ":"))  # type: ignore[union-attr]
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str) -> tuple[dt.datetime, str]:
    try:
        pad = "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(token + pad))
        t = dt.datetime.fromisoformat(data["t"])
        i = str(data["i"])
    except (binascii.Error, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise validation_problem("page_token", "not a token this API issued", "query") from exc
    return t, i


def list_jobs(
    session: Session,
    owner: str,
    *,
    page_size: int,
    page_token: str | None,
    status: str | None,
    model: str | None,
    dataset: str | None,
) -> tuple[list[Job], str | None]:
    q = sa.select(Job).where(Job.owner == owner)
    if status:
        q = q.where(Job.status == status)
    if model:
        q = q.where(Job.model_name == model)
    if dataset:
        q = q.where(Job.dataset_spec == dataset)
    if page_token:
        t, i = _decode_token(page_token)
        t_db = t.astimezone(dt.UTC)
        if session.get_bind().dialect.name == "sqlite":
            t_db = t_db.replace(tzinfo=None)
        q = q.where(sa.or_(Job.created_at < t_db, sa.and_(Job.created_at == t_db, Job.id < i)))
    q = q.order_by(Job.created_at.desc(), Job.id.desc()).limit(page_size + 1)
    rows = list(session.scalars(q))
    next_token = None
    if len(rows) > page_size:
        rows = rows[:page_size]
        next_token = _encode_token(rows[-1].created_at, rows[-1].id)
    return rows, next_token


# ---------------------------------------------------------------------------------------------
# cancel / delete


def cancel_job(session: Session, job: Job) -> Job:
    """Queued → cancelled now; running → flag for the worker (it stops at its next checkpoint)."""
    now = utcnow()
    res = session.execute(
        sa.update(Job)
        .where(Job.id == job.id, Job.status == "queued")
        .values(status="cancelled", cancel_requested=True, finished_at=now, message="cancelled before start")
    )
    if res.rowcount == 0:  # type: ignore[attr-defined]
        session.execute(sa.update(Job).where(Job.id == job.id, Job.status == "running").values(cancel_requested=True))
    session.commit()
    session.refresh(job)
    if job.status in ("succeeded", "failed"):
        raise ProblemError(
            409,
            f"Job {job.id} already {job.status}; there is nothing to cancel.",
            slug="job-finished",
            title="Job already finished",
            job_status=job.status,
        )
    return job


def delete_job(session: Session, job: Job) -> None:
    if job.status not in FINISHED_STATUSES:
        raise ProblemError(
            409,
            f"Job {job.id} is {job.status}; only finished jobs can be deleted.",
            slug="job-not-finished",
            title="Job not finished",
            hint=f"Cancel it first: POST /v1/jobs/{job.id}/cancel",
            job_status=job.status,
        )
    for model in (CurvePointRow, RecommendationRow, JobResult):
        session.execute(sa.delete(model).where(model.job_id == job.id))
    session.execute(sa.delete(Job).where(Job.id == job.id))
    session.commit()


# ---------------------------------------------------------------------------------------------
# results


def store_report(session: Session, job_id: str, report: Any) -> None:
    """Add the report's rows to ``session`` (the caller commits them with the status change)."""
    data = report.model_dump(mode="json", by_alias=True)
    curve = data.pop("curve")
    recs = data.pop("recommendations")
    session.add(
        JobResult(
            job_id=job_id,
            d=report.model.d,
            classes=list(report.dataset.classes),
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


def require_succeeded(job: Job) -> None:
    if job.status != "succeeded":
        raise ProblemError(
            409,
            f"Job {job.id} is {job.status}; results exist only for succeeded jobs.",
            slug="result-not-ready",
            title="Result not available",
            job_status=job.status,
            hint=f"Poll GET /v1/jobs/{job.id} until status is succeeded.",
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


def load_report(session: Session, job: Job) -> dict[str, Any]:
    require_succeeded(job)
    result = session.get(JobResult, job.id)
    if result is None:  # pragma: no cover - succeeded is written with its result in one transaction
        raise ProblemError(404, f"Job {job.id} has no stored result.", slug="result-missing")
    report = dict(result.report)
    report["curve"] = [p.model_dump(mode="json") for p in curve_of(session, job.id)]
    recs = session.scalars(
        sa.select(RecommendationRow).where(RecommendationRow.job_id == job.id).order_by(RecommendationRow.id)
    )
    report["recommendations"] = [r.payload for r in recs]
    return report


def recommend_for(
    session: Session,
    job: Job,
    *,
    delta: float,
    delta_mode: str | None,
    criterion: str | None,
    recommend: Callable[..., Recommendation] | None = None,
) -> RecommendationOut:
    """Answer from the stored curve (never recomputes a probe)."""
    require_succeeded(job)
    result = session.get(JobResult, job.id)
    if result is None:  # pragma: no cover
        raise ProblemError(404, f"Job {job.id} has no stored result.", slug="result-missing")
    if recommend is None:
        from redundancy.advice import recommend as engine_recommend

        recommend = engine_recommend
    mode = delta_mode or job.request.get("delta_mode") or "relative"
    crit = criterion or job.request.get("criterion") or "mean"
    curve: Sequence[CurvePoint] = curve_of(session, job.id)
    rec = recommend(
        curve,
        list(result.classes),
        int(result.d),
        float(delta),
        mode=mode,
        criterion=crit,
        intervals=stored_intervals(result.report),
    )
    return RecommendationOut(
        **rec.model_dump(by_alias=True),
        job_id=job.id,
        model=job.model_name,
        weights=str(job.request.get("model", {}).get("weights", "")),
        dataset=job.dataset_spec,
    )


def stored_intervals(report: dict[str, Any]) -> dict[int, tuple[float, float]] | None:
    """The bootstrap intervals by k that the engine stored in the report's summary (if any), read with
    the engine's own `intervals_from_summary`. Only the random-subset summary counts (the baselines live
    in `report["baselines"]`); a summary written before `kind` existed is random."""
    from redundancy.advice import intervals_from_summary
    from redundancy.report import FractionSummary

    summary = [
        FractionSummary.model_validate(s)
        for s in report.get("summary") or []
        if s.get("kind", "random") == "random"
    ]
    return intervals_from_summary(summary) or None


def latest_succeeded(session: Session, owner: str, model: str, dataset: str, weights: str | None) -> Job | None:
    q = (
        sa.select(Job)
        .where(
            Job.owner == owner,
            Job.model_name == model,
            Job.dataset_spec == dataset,
            Job.status == "succeeded",
        )
        .order_by(Job.finished_at.desc(), Job.created_at.desc())
    )
    for job in session.scalars(q.limit(200)):
        if weights is None or job.request.get("model", {}).get("weights") == weights:
            return job
    return None
