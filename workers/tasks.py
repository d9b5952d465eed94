"""Celery tasks. The work itself is in :mod:`workers.runner` and :mod:`workers.shards` (plain functions,
testable eagerly)."""

from __future__ import annotations

from celery import Task, chord
from sqlalchemy import exc as sa_exc

from redundancy import AnalysisConfig
from service.core.process import process_id
from service.core.queue import REDUCE_SHARDS_TASK, RUN_JOB_TASK, RUN_SHARD_TASK
from workers.celery_app import app
from workers.routing import delivered_queue, device_settings
from workers.runner import execute_job
from workers.shards import Rows, execute_reduce, execute_shard, plan
from workers.traced import task_span

DB_RETRIES = 60  # messages received while the database is unreachable: tried again this many times


@app.task(name=RUN_JOB_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job(self: Task, job_id: str) -> str:
    """Run one job by id. Duplicate or stale messages are harmless: the claim is atomic. The claim names this
    process (``host:pid:start:boot``, :func:`service.core.process.process_id`), not Celery's node name, so
    that a message redelivered after this process died takes the job over at once (``known_dead``)."""
    try:
        settings = device_settings(app.conf.advisor_settings, self.request, job_id)  # cuda from the gpu queue
        with task_span(self, job_id):  # the job's trace, continued from its message
            return execute_job(job_id, settings, worker_name=process_id(), shard=_plan)
    except sa_exc.OperationalError as exc:  # the database is away: do not ack the job's only message away
        if self.request.retries >= DB_RETRIES:
            raise  # the maintenance sweep re-sends it (within ADVISOR_REQUEUE_MAX_AFTER)
        raise self.retry(exc=exc, countdown=app.conf.advisor_settings.db_retry_delay, max_retries=DB_RETRIES) from exc


def _plan(job_id: str, attempt: int, config: AnalysisConfig) -> bool:
    return plan(job_id, attempt, config, app.conf.advisor_settings, _send_chord)


def _send_chord(job_id: str, attempt: int, ranges: list[Rows]) -> None:
    """The shards as a chord: any worker on the job's device queue takes a shard; the reduce runs after the last."""
    queue = {"queue": q} if (q := delivered_queue(run_job.request)) else {}
    header = [run_shard.s(job_id, attempt, i, a, b).set(**queue) for i, (a, b) in enumerate(ranges)]
    chord(header)(reduce_shards.s(job_id, attempt, [list(r) for r in ranges]).set(**queue))


@app.task(name=RUN_SHARD_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=False)
def run_shard(self: Task, job_id: str, attempt: int, index: int, start: int, stop: int) -> str:
    """Extract one shard of a job (its result, "done" or not, is what the chord's reduce receives)."""
    settings = device_settings(app.conf.advisor_settings, self.request, job_id)

    def retry(exc: Exception) -> None:
        if self.request.retries < settings.shard_retries:
            raise self.retry(exc=exc, countdown=1, max_retries=settings.shard_retries)

    with task_span(self, job_id, **{"advisor.shard": index}):
        return execute_shard(job_id, attempt, index, (start, stop), settings, retry)


@app.task(name=REDUCE_SHARDS_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def reduce_shards(self: Task, outcomes: list[str], job_id: str, attempt: int, ranges: list[list[int]]) -> str:
    """Sum the shards' statistics and run the probes; finish the job."""
    settings = device_settings(app.conf.advisor_settings, self.request, job_id)
    with task_span(self, job_id):
        return execute_reduce(outcomes, job_id, attempt, [(a, b) for a, b in ranges], settings)
