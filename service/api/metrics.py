"""Prometheus text exposition (no client library needed): request latency is kept in-process,
job counts, stage durations and queue depth are read from the database (the truth) at scrape."""

from __future__ import annotations

import threading
from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.core.models import Job
from service.core.status import JobStatus

BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGES: tuple[str, ...] = ("load_model", "load_data", "extract", "probe", "advise")


class RequestMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self._sums: dict[tuple[str, str, str], float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        with self._lock:
            counts = self._counts[key]
            for i, b in enumerate(BUCKETS):
                if seconds <= b:
                    counts[i] += 1
            counts[-1] += 1
            self._sums[key] += seconds

    def render(self) -> list[str]:
        lines = [
            "# HELP advisor_http_request_duration_seconds HTTP request latency.",
            "# TYPE advisor_http_request_duration_seconds histogram",
        ]
        with self._lock:
            for key, counts in sorted(self._counts.items()):
                method, route, status = key
                lab = f'method="{method}",route="{_esc(route)}",status="{status}"'
                for b, c in zip(BUCKETS, counts, strict=False):
                    lines.append(f'advisor_http_request_duration_seconds_bucket{{{lab},le="{b}"}} {c}')
                lines.append(f'advisor_http_request_duration_seconds_bucket{{{lab},le="+Inf"}} {counts[-1]}')
                lines.append(f"advisor_http_request_duration_seconds_sum{{{lab}}} {self._sums[key]:.6f}")
                lines.append(f"advisor_http_request_duration_seconds_count{{{lab}}} {counts[-1]}")
        return lines


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_db_metrics(session: Session, broker_depth: int | None) -> list[str]:
    lines = ["# HELP advisor_jobs Jobs by status.", "# TYPE advisor_jobs gauge"]
    counts = dict.fromkeys(JobStatus, 0)
    for status, n in session.execute(sa.select(Job.status, sa.func.count()).group_by(Job.status)):
        counts[status] = n
    for status in JobStatus:
        lines.append(f'advisor_jobs{{status="{status.value}"}} {counts[status]}')
    lines += [
        "# HELP advisor_queue_depth Jobs waiting for a worker (database).",
        "# TYPE advisor_queue_depth gauge",
        f"advisor_queue_depth {counts[JobStatus.QUEUED]}",
    ]
    if broker_depth is not None:
        lines += [
            "# HELP advisor_broker_queue_messages Messages in the broker queue.",
            "# TYPE advisor_broker_queue_messages gauge",
            f"advisor_broker_queue_messages {broker_depth}",
        ]
    sums: dict[str, float] = defaultdict(float)
    ns: dict[str, int] = defaultdict(int)
    rows = session.execute(
        sa.select(Job.stage_timings)
        .where(Job.stage_timings.is_not(None), Job.status != JobStatus.QUEUED)
        .order_by(Job.created_at.desc())
        .limit(5000)
    )
    for (timings,) in rows:
        for stage, secs in (timings or {}).items():
            try:
                sums[stage] += float(secs)
                ns[stage] += 1
            except (TypeError, ValueError):
                continue
    lines += [
        "# HELP advisor_stage_duration_seconds Time spent per engine stage (recent jobs).",
        "# TYPE advisor_stage_duration_seconds summary",
    ]
    for stage in sorted(set(sums) | set(STAGES)):
        lines.append(f'advisor_stage_duration_seconds_sum{{stage="{_esc(stage)}"}} {sums.get(stage, 0.0):.6f}')
        lines.append(f'advisor_stage_duration_seconds_count{{stage="{_esc(stage)}"}} {ns.get(stage, 0)}')
    return lines
