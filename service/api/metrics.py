"""Prometheus metrics through the official ``prometheus_client``.

Two sources, one exposition:

* **request latency by route** is observed in this process (a ``Histogram`` in the app's own
  ``CollectorRegistry``; each API process is scraped on its own);
* **everything about jobs** is computed from the database at scrape time by :class:`DatabaseCollector`:
  jobs by status, queue depth, job durations (``finished_at − started_at``) and stage durations (each
  job's ``stage_timings``, written by the worker) as histograms, webhook deliveries by outcome. The
  workers are other processes (often other machines); the database already holds what they measured, so
  nothing needs prometheus_client's multiprocess mode and every API replica reports the same totals.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core import webhooks
from service.core.models import Job, as_utc
from service.core.status import FINISHED, JobStatus

REQUEST_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS: tuple[float, ...] = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
STAGE_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
STAGES: tuple[str, ...] = ("load_model", "load_data", "extract", "probe", "advise")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RequestMetrics:
    """Request latency of one app (its own registry, so several apps in one process do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "advisor_http_request_duration_seconds", "HTTP request latency by route.",
            ["method", "route", "status"], buckets=REQUEST_BUCKETS, registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(method, route, str(status)).observe(seconds)


class RequestTiming:
    """ASGI middleware: each HTTP request's latency into ``metrics``, by method, route template and
    status (``/metrics`` itself left out). Pure ASGI, so a request costs no extra task or stream, as
    ``@app.middleware("http")`` would."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", None) or "<unmatched>"  # set by the router
            if path != "/metrics":
                self.metrics.observe(scope["method"], path, status, time.perf_counter() - start)


def histogram_buckets(values: Sequence[float], bounds: Sequence[float]) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs, ``+Inf`` last, as the exposition format wants them."""
    ordered = sorted(values)
    out, i = [], 0
    for b in bounds:
        while i < len(ordered) and ordered[i] <= b:
            i += 1
        out.append((repr(float(b)), float(i)))
    out.append(("+Inf", float(len(ordered))))
    return out


def _histogram(name: str, doc: str, label: str, groups: dict[str, list[float]],
               bounds: Sequence[float]) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc, labels=[label])
    for key in sorted(groups):
        fam.add_metric([key], histogram_buckets(groups[key], bounds), sum_value=sum(groups[key]))
    return fam


class DatabaseCollector(Collector):
    """Job and delivery metrics read from the database (the truth) at scrape time."""

    def __init__(self, session: Session, broker_depth: int | None) -> None:
        self.session, self.broker_depth = session, broker_depth

    def collect(self) -> Iterator[Metric]:
        s = self.session
        counts = dict.fromkeys(JobStatus, 0)
        for status, n in s.execute(sa.select(Job.status, sa.func.count()).group_by(Job.status)):
            counts[JobStatus(status)] = int(n)
        jobs = GaugeMetricFamily("advisor_jobs", "Jobs by status.", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status.value], counts[status])
        yield jobs
        yield GaugeMetricFamily("advisor_queue_depth", "Jobs waiting for a worker (database).",
                                value=counts[JobStatus.QUEUED])
        if self.broker_depth is not None:
            yield GaugeMetricFamily("advisor_broker_queue_messages", "Messages in the broker queue.",
                                    value=self.broker_depth)
        durations: dict[str, list[float]] = {st.value: [] for st in FINISHED}
        stages: dict[str, list[float]] = {st: [] for st in STAGES}
        rows = s.execute(
            sa.select(Job.status, Job.started_at, Job.finished_at, Job.stage_timings).where(Job.status.in_(FINISHED))
        )
        for status, started, finished, timings in rows:
            if started is not None and finished is not None:
                durations[JobStatus(status).value].append(
                    max(0.0, (as_utc(finished) - as_utc(started)).total_seconds())  # type: ignore[operator]
                )
            for stage, secs in _numeric(timings):
                stages.setdefault(stage, []).append(secs)
        yield _histogram("advisor_job_duration_seconds", "Run time of finished jobs (start to finish), by status.",
                         "status", durations, JOB_BUCKETS)
        yield _histogram("advisor_stage_duration_seconds", "Time spent per engine stage, finished jobs.",
                         "stage", stages, STAGE_BUCKETS)
        deliveries = GaugeMetricFamily("advisor_webhook_deliveries", "Webhook deliveries by outcome.",
                                       labels=["outcome"])
        for state, n in webhooks.counts_by_state(s).items():
            deliveries.add_metric([state], n)
        yield deliveries


def _numeric(timings: dict[str, object] | None) -> Iterable[tuple[str, float]]:
    for stage, secs in (timings or {}).items():
        try:
            yield str(stage), float(secs)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue


def render(request_metrics: RequestMetrics, session: Session, broker_depth: int | None,
           limiter: Any = None) -> bytes:
    """The whole exposition; ``advisor_up`` says whether the database could be read;
    ``advisor_rate_limit_storage_failures_total`` how often the rate limiter's Redis did not answer (each
    time it counted in memory instead)."""
    db = CollectorRegistry(auto_describe=False)
    up = CollectorRegistry(auto_describe=False)
    try:
        db.register(DatabaseCollector(session, broker_depth))
        db_text = generate_latest(db)
        ok = 1
    except Exception:  # noqa: BLE001 - a scrape must answer even when the database is down
        session.rollback()
        db_text, ok = b"", 0

    class _Up(Collector):
        def collect(self) -> Iterator[Metric]:
            yield GaugeMetricFamily("advisor_up", "Database reachable.", value=ok)
            if limiter is not None:
                yield CounterMetricFamily(
                    "advisor_rate_limit_storage_failures",
                    "Times the rate limiter's shared storage (Redis) failed or timed out; the request went on, "
                    "counted in this process's memory.", value=getattr(limiter, "storage_failures", 0))
                yield GaugeMetricFamily(
                    "advisor_rate_limit_in_memory",
                    "1 while the rate limiter counts in memory because its Redis did not answer.",
                    value=1 if getattr(limiter, "in_memory", False) else 0)

    up.register(_Up())
    return generate_latest(request_metrics.registry) + db_text + generate_latest(up)
