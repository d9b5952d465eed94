"""Celery tasks. The work itself is in :mod:`workers.runner` (plain functions, testable eagerly)."""

from __future__ import annotations

import socket

from celery import Task

from service.core.queue import RUN_JOB_TASK
from workers.celery_app import app
from workers.runner import execute_job


@app.task(name=RUN_JOB_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job(self: Task, job_id: str) -> str:
    """Run one job by id. Duplicate or stale messages are harmless: the claim is atomic."""
    settings = app.conf.advisor_settings
    return execute_job(job_id, settings, worker_name=self.request.hostname or socket.gethostname())
