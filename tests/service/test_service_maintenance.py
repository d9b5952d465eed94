"""A lost message must not lose a job: queued jobs are re-sent, dead workers' jobs are revived."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from service.core.db import session_scope
from service.core.maintenance import MAX_ATTEMPTS, run_maintenance_once
from service.core.models import Job


def _set(settings, job_id, **values):
    with session_scope(settings.db_url) as s:
        s.execute(sa.update(Job).where(Job.id == job_id).values(**values))


def _get(settings, job_id) -> Job:
    with session_scope(settings.db_url) as s:
        return s.get(Job, job_id)


def test_queued_job_whose_message_was_lost_is_sent_again(harness, job_body):
    job = harness.submit(job_body())
    harness.sent.clear()  # the broker lost it
    stats = run_maintenance_once(harness.settings, harness)
    assert stats["requeued"] == 0 and harness.sent == [], "not before ADVISOR_REQUEUE_AFTER"
    old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=harness.settings.requeue_after + 5)
    _set(harness.settings, job["id"], enqueued_at=old)
    assert run_maintenance_once(harness.settings, harness)["requeued"] == 1
    assert harness.sent == [job["id"]]
    assert _get(harness.settings, job["id"]).enqueue_count == 2
    assert harness.run_all() == ["succeeded"]


def test_never_sent_job_is_sent(harness, job_body):
    job = harness.submit(job_body())
    harness.sent.clear()
    _set(harness.settings, job["id"], enqueued_at=None,
         created_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10))
    assert run_maintenance_once(harness.settings, harness)["requeued"] == 1
    assert harness.sent == [job["id"]]


def test_running_job_of_a_dead_worker_is_revived_then_failed(harness, job_body):
    job = harness.submit(job_body())
    harness.sent.clear()
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=harness.settings.stale_after + 5)
    _set(harness.settings, job["id"], status="running", heartbeat_at=stale, attempts=1)
    assert run_maintenance_once(harness.settings, harness)["revived"] == 1
    assert _get(harness.settings, job["id"]).status == "queued" and harness.sent == [job["id"]]
    harness.sent.clear()
    _set(harness.settings, job["id"], status="running", heartbeat_at=stale, attempts=MAX_ATTEMPTS)
    assert run_maintenance_once(harness.settings, harness)["failed"] == 1
    got = _get(harness.settings, job["id"])
    assert got.status == "failed" and got.error_code == "worker_lost" and harness.sent == []


def test_duplicate_message_is_harmless(harness, job_body):
    job = harness.submit(job_body())
    assert harness.run(job["id"]) == "succeeded"
    assert harness.run(job["id"]) == "skipped"
    assert harness.engine.calls == 1


def test_redelivered_message_takes_over_a_stale_running_job(harness, job_body):
    job = harness.submit(job_body())
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=harness.settings.stale_after + 5)
    _set(harness.settings, job["id"], status="running", heartbeat_at=stale, attempts=1)
    assert harness.run(job["id"]) == "succeeded"
    assert _get(harness.settings, job["id"]).attempts == 2
