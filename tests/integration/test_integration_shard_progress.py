"""The sharded job's transitions (`start_shards`, `shard_progress`) and the extraction progress of
`heartbeat`, against SQLite and Postgres: fenced by attempt, the job's images done is the shards' sum."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from redundancy.config import AnalysisConfig
from service.api.schemas import SMALL_JOB_EXAMPLE
from service.core import lifecycle
from service.core.models import Job

CONFIG = AnalysisConfig.model_validate(SMALL_JOB_EXAMPLE)


def _running(session: Session) -> tuple[str, int]:
    job, _ = lifecycle.create(session, CONFIG, owner="o", idempotency_key=None)
    claim = lifecycle.claim(session, job.id, worker="w", stale_after=180)
    assert claim is not None
    return job.id, claim.attempt


def _job(session: Session, job_id: str) -> Job:
    session.expire_all()
    job = session.get(Job, job_id)
    assert job is not None
    return job


def test_shard_progress_sums_the_shards_and_is_fenced_by_attempt(session: Session) -> None:
    job_id, attempt = _running(session)
    assert lifecycle.start_shards(session, job_id, attempt, [(0, 100), (100, 200), (200, 250)])
    job = _job(session, job_id)
    assert (job.images_done, job.images_total, job.stage) == (0, 250, "extract")
    assert lifecycle.shard_progress(session, job_id, attempt, 0, 60, overall=lambda f: f)
    assert lifecycle.shard_progress(session, job_id, attempt, 2, 50, overall=lambda f: f)
    assert lifecycle.shard_progress(session, job_id, attempt, 0, 100, overall=lambda f: f)  # not added twice
    job = _job(session, job_id)
    assert job.images_done == 150 and job.progress == pytest.approx(150 / 250)
    assert job.eta_s is None or job.eta_s >= 0
    # another attempt's shard writes nothing and is told to stop
    assert not lifecycle.shard_progress(session, job_id, attempt + 1, 1, 99, overall=lambda f: f)
    assert not lifecycle.start_shards(session, job_id, attempt + 1, [(0, 250)])
    assert _job(session, job_id).images_done == 150
    # a cancel reaches every shard through its progress write
    lifecycle.cancel(session, job_id, "o")
    assert not lifecycle.shard_progress(session, job_id, attempt, 1, 10, overall=lambda f: f)


def test_heartbeat_stores_images_and_a_new_attempt_clears_them(session: Session) -> None:
    job_id, attempt = _running(session)
    images = lifecycle.ImagesProgress(done=30, total=120, eta_s=lifecycle.eta_seconds(30, 120, 6.0))
    assert images.eta_s == 18.0
    assert lifecycle.heartbeat(session, job_id, attempt, progress=0.2, stage="extract", message=None,
                               stage_timings={}, images=images)
    job = _job(session, job_id)
    assert (job.images_done, job.images_total, job.eta_s) == (30, 120, 18.0)
    taken = lifecycle.claim(session, job_id, worker="w2", stale_after=-1.0)  # a takeover starts over
    assert taken is not None and taken.attempt == attempt + 1
    job = _job(session, job_id)
    assert (job.images_done, job.images_total, job.eta_s) == (None, None, None)


def test_eta_is_the_rate_so_far() -> None:
    assert lifecycle.eta_seconds(50, 200, 10.0) == 30.0
    assert lifecycle.eta_seconds(200, 200, 10.0) == 0.0
    assert lifecycle.eta_seconds(0, 200, 10.0) is None
