"""Issue 9 §5–6: two real Celery workers (Postgres + Redis) race for one job whose message is sent
three times: exactly one run is claimed, the job succeeds once, and its result is stored once."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from service.core.db import session_scope
from service.core.models import CurvePointRow, Job, JobResult
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration
TERMINAL = {"succeeded", "failed", "cancelled"}


def test_two_workers_racing_for_one_job_store_it_once(client, wait, settings, stack_env, tmp_path, small_job):  # type: ignore[no-untyped-def]
    from service.broker import CeleryQueue

    log = tmp_path / "second-worker.log"
    with open(log, "wb") as fh:
        second = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool=solo",
             f"--queues={stack_env['ADVISOR_QUEUE']}", "--loglevel=info", "--without-gossip",
             "--without-mingle", "--without-heartbeat", f"--hostname=second-{stack_env['ADVISOR_QUEUE']}@%h"],
            env=stack_env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(3)
        job = client.post("/v1/jobs", json={**small_job, "seeds": 3}).json()
        broker = CeleryQueue(settings)
        try:
            broker.enqueue(job["id"])  # two duplicates of the message the API already sent
            broker.enqueue(job["id"])
        finally:
            broker.close()
        assert wait(client, job["id"], TERMINAL, timeout=180)["status"] == "succeeded"
        time.sleep(3)  # let the duplicates reach a worker
        with session_scope(settings.db_url) as s:
            row = s.get(Job, job["id"])
            assert row is not None and row.attempts == 1
            assert s.scalar(sa.select(sa.func.count()).select_from(JobResult).where(JobResult.job_id == job["id"])) == 1
            per_point = s.execute(
                sa.select(sa.func.count()).select_from(CurvePointRow).where(CurvePointRow.job_id == job["id"])
                .group_by(CurvePointRow.kind, CurvePointRow.position, CurvePointRow.seed)).scalars().all()
            assert per_point and set(per_point) == {1}
    finally:
        second.terminate()
        second.wait(timeout=30)
