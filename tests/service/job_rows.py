"""Jobs in every state the list shows, and the check that a rendered page (``service.api.job_pages``) is byte for
byte the slow path's ``JobList(items=[JobOut.of(job) …]).model_dump_json(by_alias=True)``: used on SQLite here
and on Postgres (``tests/integration/test_integration_list_reads.py``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from service.api.job_pages import JobPages
from service.api.schemas import JobList, JobOut
from service.core import queries
from service.core.db import get_sessionmaker, session_scope
from service.core.models import Job
from service.core.status import JobStatus

T0 = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)


def varied_jobs(owner: str) -> list[Job]:
    """Ten jobs: queued, running, succeeded (with MLflow), failed, cancelled, waiting for a gpu worker, fallen
    back, with a callback, non-ASCII text and awkward numbers in the request, and two at the same instant
    (the page token's tie-break on the id)."""

    def job(i: int, **over: Any) -> Job:
        values: dict[str, Any] = dict(
            id=f"00000000-0000-0000-0000-{i:012d}", owner=owner, status=JobStatus.QUEUED, progress=0.0,
            request={"model": {"name": "tf_efficientnet_lite0"}, "seeds": i, "fractions": [0.1, 0.25, 1.0]},
            config_hash=f"{i:064x}", model_name="tf_efficientnet_lite0", dataset_spec="digits",
            cancel_requested=False, enqueue_count=1, attempts=0, created_at=T0 + dt.timedelta(seconds=i),
            device="auto", route="cpu")
        values.update(over)
        return Job(**values)

    at = T0 + dt.timedelta(minutes=5)
    return [
        job(0),
        job(1, status=JobStatus.RUNNING, stage="extract", progress=0.42, message="batch 12/28", images_done=768,
            images_total=1792, eta_s=41.0, started_at=at, heartbeat_at=at, attempts=1, worker="h:1:2:3"),
        job(2, status=JobStatus.SUCCEEDED, stage="done", progress=1.0, started_at=at, finished_at=at, attempts=1,
            stage_timings={"extract": 1.25, "probe": 0.5}, mlflow={"tracking_uri": "file:///m", "experiment": "e"},
            mlflow_run={"state": "logged", "run_id": "r1", "error": None, "at": at.isoformat()}),
        job(3, status=JobStatus.FAILED, error_code="invalid_input", error_message="bad “dataset” — é",
            error_field="dataset.spec", finished_at=at, attempts=2),
        job(4, status=JobStatus.CANCELLED, cancel_requested=True, finished_at=at,
            mlflow={"tracking_uri": "file:///m", "experiment": "e"}),
        job(5, device="cuda", route="gpu", stage="waiting for a gpu worker (none seen in the last 20 s; queue depth 3)",
            queue_depth=3, workers_alive=0, device_fallback_after=600.0),
        job(6, device="cuda", route="cpu", device_fallback_after=5.0, fell_back_at=at, message="fell back ✓"),
        job(7, callback_url="https://hooks.example.com/a%C3%A9", trace_context={"traceparent": "00-ab-cd-01"}),
        job(8, request={"text": "naïve ☃ \u2028", "x": 1e-7, "big": 2**53 + 1, "nested": [[1, 2.5], {"k": None}]}),
        job(9, created_at=T0 + dt.timedelta(seconds=8)),  # the same instant as job 8: ordered by id
    ]


def slow_page(session: Any, owner: str, **params: Any) -> tuple[bytes, str | None]:
    jobs, token = queries.list_jobs(session, owner, **params)
    page = JobList(items=[JobOut.of(j) for j in jobs], next_page_token=token)
    return page.model_dump_json(by_alias=True).encode(), token


def assert_pages_match_the_slow_path(url: str, owner: str) -> int:
    """Store :func:`varied_jobs`, then walk every page at several sizes and filters both ways; the pages compared."""
    with session_scope(url) as s:
        s.add_all(varied_jobs(owner))
    pages = JobPages()
    compared = 0
    maker = get_sessionmaker(url)
    for size in (1, 3, 20):
        for status in (None, JobStatus.QUEUED):
            token: str | None = None
            while True:
                params = dict(page_size=size, page_token=token, status=status, model=None, dataset=None)
                with maker() as s:
                    slow, slow_token = slow_page(queries.one_statement_read(s), owner, **params)
                with maker() as s:
                    rows, token = queries.list_job_rows(queries.one_statement_read(s), owner, **params)
                fast = pages.page(rows, token)
                assert fast == slow, (size, status, fast[:300], slow[:300])
                assert token == slow_token
                compared += 1
                if token is None:
                    break
    return compared
