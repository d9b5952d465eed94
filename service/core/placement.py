"""Where a job runs (issue 23, queues by device): the columns a submission sets from the request's ``device``
and ``device_fallback_after``, the jobs due to fall back to the cpu queue, and the gpu queue's depth and live
workers (:mod:`service.core.presence`) that ``GET /v1/jobs/{id}`` shows a waiting job, as the maintenance sweep
last noted them (a read costs nothing more). The routing rule itself is :func:`service.core.queue.route_for`;
the fallback transition is :func:`service.core.lifecycle.fall_back_to_cpu`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.core.config import Settings
from service.core.models import Job, as_utc
from service.core.queue import GPU_WAITING_STAGE, route_for
from service.core.status import JobStatus


def placement(device: str, fallback_after: float | None, settings: Settings) -> dict[str, Any]:
    """A new job's device columns: the device asked for, its route and, in the gpu queue, the waiting stage and
    the fallback time (which a cpu-queue job has no use for)."""
    route = route_for(device, settings.gpu_workers)
    gpu = route == "gpu"
    return {"device": device, "route": route, "device_fallback_after": fallback_after if gpu else None,
            "stage": GPU_WAITING_STAGE if gpu else None}


def requested_device(session: Session, job_id: str) -> str | None:
    """The ``device`` a job asked for (None: deleted)."""
    return session.scalar(sa.select(Job.device).where(Job.id == job_id))


def queued_routes(session: Session) -> dict[str, str]:
    """Every queued job's route (``cpu`` for one sent before routes existed)."""
    rows = session.execute(sa.select(Job.id, Job.route).where(Job.status == JobStatus.QUEUED)).all()
    return {r.id: r.route or "cpu" for r in rows}


def fallback_at(job: Job) -> dt.datetime | None:
    """When a job waiting in the gpu queue falls back to the cpu queue (None: never)."""
    created = as_utc(job.created_at)
    if job.route != "gpu" or job.device_fallback_after is None or created is None:
        return None
    return created + dt.timedelta(seconds=job.device_fallback_after)


def due_fallbacks(session: Session, now: dt.datetime) -> Sequence[tuple[str, float]]:
    """(id, seconds allowed) of queued gpu-queue jobs whose fallback time has passed."""
    rows = session.execute(
        sa.select(Job.id, Job.created_at, Job.device_fallback_after).where(
            Job.status == JobStatus.QUEUED, Job.route == "gpu", Job.device_fallback_after.is_not(None))
    ).all()
    return [(r.id, r.device_fallback_after) for r in rows
            if (as_utc(r.created_at) or now) + dt.timedelta(seconds=r.device_fallback_after) <= now]


def waiting_on_gpu(session: Session) -> int:
    """How many queued jobs wait in the gpu queue."""
    return session.scalar(sa.select(sa.func.count()).select_from(Job).where(
        Job.status == JobStatus.QUEUED, Job.route == "gpu")) or 0


def waiting_stage(depth: int | None, alive: int, window: float) -> str:
    """The stage of a job waiting in the gpu queue: whether any worker consuming it is alive, and its depth,
    e.g. ``waiting for a gpu worker (none seen in the last 20 s; queue depth 3)`` or ``(2 alive; queue depth 3)``."""
    workers = f"{alive} alive" if alive else f"none seen in the last {window:g} s"
    return f"{GPU_WAITING_STAGE} ({workers}; queue depth {'unknown' if depth is None else depth})"


def note_gpu_wait(session: Session, depth: int | None, alive: int, window: float) -> None:
    """Record on every job waiting in the gpu queue its depth and how many workers consuming it are alive (what
    their ``stage`` and ``waiting`` show; ``window``: the seconds a worker counts as alive after its last beat)."""
    session.execute(sa.update(Job).where(Job.status == JobStatus.QUEUED, Job.route == "gpu")
                    .values(queue_depth=depth, workers_alive=alive, stage=waiting_stage(depth, alive, window)))
    session.commit()
