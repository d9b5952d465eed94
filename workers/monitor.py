"""Carries a running job's progress from the engine thread to the database, and the cancel flag back.

A monitor thread writes ``stage``/``progress``/``heartbeat_at`` every second while the engine runs
(whether or not the engine reported anything new) through :func:`service.core.lifecycle.heartbeat`, and
learns from its answer whether the job was cancelled, deleted or taken over. The engine's
``should_stop`` hook only reads a thread-safe flag, so the database sees about one query per second.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.orm import Session

from redundancy.progress import ProgressEvent, stage_overall
from service.core import lifecycle, tracing
from service.core.config import Settings
from service.core.db import session_scope

log = logging.getLogger("workers.monitor")


class JobMonitor:
    def __init__(self, settings: Settings, job_id: str, attempt: int, interval: float = 1.0) -> None:
        self.settings = settings
        self.job_id = job_id
        self.attempt = attempt
        self.interval = min(interval, settings.heartbeat)
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self._stage: str | None = None
        self._progress = 0.0
        self._message: str | None = None
        self._stage_started: float | None = None
        self._images: tuple[int, int] | None = None  # (done, total) during extraction
        self._images_started: float | None = None
        self.timings: dict[str, float] = {}
        self._spans = tracing.StageSpans(job_id)  # a trace span per engine stage (when traced)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"job-monitor-{job_id[:8]}", daemon=True)
        # Pool-independent soft time limit (the solo pool cannot enforce Celery's): stop at the next
        # checkpoint and fail the job with time_limit_exceeded.
        self.deadline = time.monotonic() + settings.task_soft_time_limit
        self.timed_out = False

    # engine-side hooks ------------------------------------------------------------------------
    def on_progress(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        with self._lock:
            stage = event.stage or self._stage
            if stage != self._stage:
                if self._stage is not None and self._stage_started is not None:
                    self.timings[self._stage] = self.timings.get(self._stage, 0.0) + now - self._stage_started
                self._stage, self._stage_started = stage, now
                self._spans.enter(stage)
            self._progress = max(self._progress, min(1.0, max(0.0, float(event.overall))))
            self._message = event.message or None
            if event.images_done is not None and event.images_total is not None:
                if self._images_started is None:
                    self._images_started = now
                self._images = (event.images_done, event.images_total)

    def should_stop(self) -> bool:
        return self.cancel.is_set()

    # lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> JobMonitor:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._spans.close(exc)
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            if self._stage is not None and self._stage_started is not None:
                self.timings[self._stage] = self.timings.get(self._stage, 0.0) + (
                    time.monotonic() - self._stage_started
                )
                self._stage_started = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if time.monotonic() > self.deadline and not self.timed_out:
                self.timed_out = True
                self.cancel.set()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - a DB hiccup must not kill the job
                log.warning("progress write for job %s failed", self.job_id, exc_info=True)

    def flush(self) -> None:
        with self._lock:
            stage, progress, message = self._stage, self._progress, self._message
            timings = dict(self.timings)
            if stage is not None and self._stage_started is not None:
                timings[stage] = timings.get(stage, 0.0) + time.monotonic() - self._stage_started
            images = None
            if self._images is not None and self._images_started is not None:
                done, total = self._images
                images = lifecycle.ImagesProgress(
                    done, total, lifecycle.eta_seconds(done, total, time.monotonic() - self._images_started))
        with session_scope(self.settings.db_url) as s:
            go_on = self.write(s, progress, stage, message, timings, images)
        if not go_on:
            self.cancel.set()

    def write(
        self, s: Session, progress: float, stage: str | None, message: str | None, timings: dict[str, float],
        images: lifecycle.ImagesProgress | None,
    ) -> bool:
        """One heartbeat; True: go on."""
        return lifecycle.heartbeat(s, self.job_id, self.attempt, progress=progress, stage=stage, message=message,
                                   stage_timings=timings, images=images)


class ShardMonitor(JobMonitor):
    """A shard's monitor: its images done go to its shard row, the job's progress is the shards' sum
    (:func:`service.core.lifecycle.shard_progress`), and the cancel flag comes back the same way."""

    def __init__(self, settings: Settings, job_id: str, attempt: int, index: int, interval: float = 1.0) -> None:
        super().__init__(settings, job_id, attempt, interval)
        self.index = index

    def write(
        self, s: Session, progress: float, stage: str | None, message: str | None, timings: dict[str, float],
        images: lifecycle.ImagesProgress | None,
    ) -> bool:
        return lifecycle.shard_progress(s, self.job_id, self.attempt, self.index, images.done if images else 0,
                                        overall=self.overall)

    @staticmethod
    def overall(fraction: float) -> float:
        """The job's overall progress when `fraction` of its images are extracted."""
        return stage_overall("extract", fraction)
