"""One job over several workers (issue 13): its extraction as shards of rows, then a reduce.

A job whose images (train + val + test) exceed ``ADVISOR_SHARD_SIZE`` is planned by :func:`plan`
in the ``run_job`` task that claimed it: row ranges of at most that size are recorded with the job
(:func:`service.core.lifecycle.start_shards`) and sent as a Celery chord, so any worker on the queue
may take a shard, and the reduce runs once every shard has finished.

* A **shard** (:func:`execute_shard`) extracts its rows (:func:`redundancy.pipeline.extract_shard`) and
  puts its additive statistics and feature slices in the artifact store
  (:class:`service.core.store.ShardStore`). Its monitor writes its images done to its shard row; the
  job's progress is the sum (:func:`~service.core.lifecycle.shard_progress`), which also brings back
  the cancel flag, so a cancel stops every shard at its next batch. A shard that raises is retried
  alone (``ADVISOR_SHARD_RETRIES``) before the job fails. A shard already in the store is not redone:
  when a worker is lost mid-shard, the job's heartbeat goes stale, the maintenance sweep requeues it,
  and the new attempt recomputes only the shards that never finished.
* The **reduce** (:func:`execute_reduce`) sums the shards' statistics, joins their slices and runs the
  probes (:func:`redundancy.pipeline.analyze_from_shards`, the same code as an unsharded job), then
  finishes the job through the same transitions as :func:`workers.runner.run_claimed`.

Every write is fenced by the attempt that planned the shards: shards of a superseded attempt stop.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from celery.exceptions import SoftTimeLimitExceeded

from redundancy import AnalysisConfig, Runtime
from redundancy.errors import Cancelled, RedundancyError
from redundancy.pipeline import Analysis, analyze_from_shards, extract_shard, prepare, prepare_data
from redundancy.progress import ProgressEvent, ProgressFn, StopFn
from redundancy.sources.extraction import shard_rows
from service.core import lifecycle, queries, uploads
from service.core.config import Settings
from service.core.db import session_scope
from service.core.runtime import make_runtime
from service.core.store import ShardStore
from workers.monitor import ShardMonitor
from workers.runner import Outcome, classify, run_claimed

log = logging.getLogger("workers.shards")

ShardOutcome = Literal["done", "cancelled", "failed", "skipped"]
Rows = tuple[int, int]
SendChord = Callable[[str, int, list[Rows]], None]


def plan(job_id: str, attempt: int, config: AnalysisConfig, settings: Settings, send: SendChord) -> bool:
    """Shard the job if its images exceed the shard size: record the shards, send the chord, True.
    False: the job is small, run it unsharded."""
    runtime = make_runtime(settings)
    total = prepare_rows(config, runtime)
    if total <= settings.shard_size:
        return False
    ranges = shard_rows(total, settings.shard_size)
    with session_scope(settings.db_url) as s:
        if not lifecycle.start_shards(s, job_id, attempt, ranges):
            return True  # the job changed hands meanwhile: nothing for this attempt to do
    log.info("job %s: %d images in %d shards of ≤ %d", job_id, total, len(ranges), settings.shard_size)
    send(job_id, attempt, ranges)
    return True


def prepare_rows(config: AnalysisConfig, runtime: Runtime) -> int:
    """The images one extraction of `config` runs through the model (the dataset is loaded and capped
    as the analysis would; the model is not)."""
    data = prepare_data(config, runtime)
    return len(data.train) + len(data.val) + len(data.test)


def execute_shard(
    job_id: str, attempt: int, index: int, rows: Rows, settings: Settings, retry: Callable[[Exception], None]
) -> ShardOutcome:
    """Extract one shard into the artifact store. `retry(exc)` raises (Celery's retry) while retries
    are left and returns when they are spent; then the job fails."""
    store = ShardStore(settings.shard_store_url)
    monitor = ShardMonitor(settings, job_id, attempt, index)
    with session_scope(settings.db_url) as s:
        request = queries.job_request(s, job_id)
        done = store.has_shard(job_id, rows)
        if request is None or not lifecycle.shard_progress(s, job_id, attempt, index, rows[1] - rows[0] if done else 0,
                                                           overall=monitor.overall):
            return "skipped"
    if done:
        return "done"
    runtime = make_runtime(settings)
    work = Path(tempfile.mkdtemp(prefix=f".shard-{job_id[:8]}-{index}.", dir=_work_dir(runtime)))
    try:
        with monitor:
            config = uploads.for_engine(settings, job_id, AnalysisConfig.model_validate(request))
            prep = prepare(config, runtime)
            extract_shard(config, prep, rows, work, runtime.resolve_device(), runtime,
                          progress=lambda d, t: monitor.on_progress(
                              ProgressEvent("extract", d / t, monitor.overall(d / t), images_done=d, images_total=t)),
                          should_stop=monitor.should_stop)
            store.put_shard(job_id, rows, work)
        monitor.flush()
        return "done"
    except Cancelled:
        if monitor.timed_out:
            return _fail(settings, job_id, attempt, *classify(SoftTimeLimitExceeded()))
        return "cancelled"
    except RedundancyError as exc:
        return _fail(settings, job_id, attempt, exc.code, exc.message, exc.field)
    except Exception as exc:  # noqa: BLE001 - retried alone, then the job fails
        log.warning("job %s shard %d %s failed: %s", job_id, index, rows, exc, exc_info=True)
        retry(exc)
        return _fail(settings, job_id, attempt, *classify(exc))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def execute_reduce(outcomes: list[str], job_id: str, attempt: int, ranges: list[Rows], settings: Settings) -> Outcome:
    """Sum the shards and run the probes, once every shard is in; or finish a cancelled job."""
    store = ShardStore(settings.shard_store_url)
    if any(o != "done" for o in outcomes):
        # A shard stops short only when the job was cancelled, failed, or left this attempt; of those,
        # only a cancelled job is still held by it (the transition is fenced).
        with session_scope(settings.db_url) as s:
            lifecycle.finish_cancelled(s, job_id, attempt, None)
        store.drop_shards(job_id)
        return "skipped"
    with session_scope(settings.db_url) as s:
        request = queries.job_request(s, job_id)
    if request is None:
        return "skipped"
    runtime = make_runtime(settings)
    work = Path(tempfile.mkdtemp(prefix=f".reduce-{job_id[:8]}.", dir=_work_dir(runtime)))

    def analyze(config: AnalysisConfig, runtime: Runtime, progress: ProgressFn, should_stop: StopFn) -> Analysis:
        dirs = [store.get_shard(job_id, rows, work / str(i)) for i, rows in enumerate(ranges)]
        extracted = ShardMonitor.overall(1.0)  # the shards are done: the job's progress does not go back

        def forward(ev: ProgressEvent) -> None:
            progress(dataclasses.replace(ev, overall=max(ev.overall, extracted)))

        return analyze_from_shards(config, runtime, dirs, progress=forward, should_stop=should_stop)

    try:
        outcome = run_claimed(job_id, attempt, request, settings, analyze)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if outcome != "skipped":
        store.drop_shards(job_id)
    return outcome


def _fail(settings: Settings, job_id: str, attempt: int, code: str, message: str, field: str | None = None) -> str:
    with session_scope(settings.db_url) as s:
        lifecycle.fail(s, job_id, attempt, code=code, message=message, field=field)
    return "failed"


def _work_dir(runtime: Runtime) -> Path:
    runtime.work_dir.mkdir(parents=True, exist_ok=True)
    return runtime.work_dir
