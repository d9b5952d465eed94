"""The shard task's own rules, eagerly (no broker): a failing shard is retried alone and then fails the
job; an engine error fails it at once; a shard already in the artifact store is not redone; a small job
is not sharded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import workers.shards as shards
from redundancy import AnalysisConfig
from redundancy.errors import RedundancyError
from service.core import lifecycle
from service.core.config import Settings
from service.core.db import session_scope
from service.core.models import Job
from service.core.store import ShardStore
from tests.service.conftest import small_job


class Retry(Exception):
    pass


def _running(settings: Settings) -> tuple[str, int]:
    with session_scope(settings.db_url) as s:
        job, _ = lifecycle.create(s, AnalysisConfig.model_validate(small_job()), owner="", idempotency_key=None)
        attempt = lifecycle.claim(s, job.id, worker="w", stale_after=180).attempt  # type: ignore[union-attr]
        assert lifecycle.start_shards(s, job.id, attempt, [(0, 200), (200, 400)])
    return job.id, attempt


def _job(settings: Settings, job_id: str) -> Job:
    with session_scope(settings.db_url) as s:
        job = s.get(Job, job_id)
        assert job is not None
        s.expunge(job)
        return job


def _fake_extract(calls: list[Any], fail_times: int, exc: Exception):  # type: ignore[no-untyped-def]
    def extract_shard(config, prep, rows, store: Path, *_a: Any, progress=None, **_k: Any) -> None:
        calls.append(rows)
        if len(calls) <= fail_times:
            raise exc
        (store / "stats.npz").write_bytes(b"s")
        if progress is not None:
            progress(rows[1] - rows[0], rows[1] - rows[0])

    return extract_shard


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shards, "prepare", lambda config, runtime: None)


def test_a_failing_shard_is_retried_alone_then_fails_the_job(settings, monkeypatch, no_model) -> None:
    job_id, attempt = _running(settings)
    calls: list[Any] = []
    monkeypatch.setattr(shards, "extract_shard", _fake_extract(calls, 10, RuntimeError("disk on fire")))
    retries: list[Exception] = []

    def retry(exc: Exception) -> None:
        retries.append(exc)
        if len(retries) <= 2:
            raise Retry  # Celery's self.retry raises; the task runs again later

    for _ in range(2):
        with pytest.raises(Retry):
            shards.execute_shard(job_id, attempt, 1, (200, 400), settings, retry)
        assert _job(settings, job_id).status == "running"
    assert shards.execute_shard(job_id, attempt, 1, (200, 400), settings, retry) == "failed"
    assert calls == [(200, 400)] * 3  # only this shard's rows, each time
    job = _job(settings, job_id)
    assert job.status == "failed" and job.error_code == "internal_error" and "disk on fire" in job.error_message


def test_an_engine_error_fails_the_job_without_retry(settings, monkeypatch, no_model) -> None:
    job_id, attempt = _running(settings)
    monkeypatch.setattr(shards, "extract_shard",
                        _fake_extract([], 1, RedundancyError("bad image", field="dataset.spec")))
    assert shards.execute_shard(job_id, attempt, 0, (0, 200), settings, lambda e: pytest.fail("retried")) == "failed"
    job = _job(settings, job_id)
    assert (job.status, job.error_field) == ("failed", "dataset.spec")


def test_a_stored_shard_is_not_redone_and_counts_as_progress(settings, monkeypatch, no_model, tmp_path) -> None:
    job_id, attempt = _running(settings)
    calls: list[Any] = []
    monkeypatch.setattr(shards, "extract_shard", _fake_extract(calls, 0, RuntimeError()))
    assert shards.execute_shard(job_id, attempt, 0, (0, 200), settings, lambda e: None) == "done"
    assert ShardStore(settings.shard_store_url).has_shard(job_id, (0, 200))
    assert shards.execute_shard(job_id, attempt, 0, (0, 200), settings, lambda e: None) == "done"
    assert calls == [(0, 200)]
    assert _job(settings, job_id).images_done == 200
    # another attempt's shard neither runs nor writes
    assert shards.execute_shard(job_id, attempt + 1, 1, (200, 400), settings, lambda e: None) == "skipped"
    assert calls == [(0, 200)]


def test_a_small_job_is_not_sharded_and_a_large_one_is(settings_factory, tmp_path) -> None:
    sent: list[Any] = []
    for size, sharded in ((400, False), (150, True)):
        s = settings_factory(tmp_path / str(size), shard_size=size)
        with session_scope(s.db_url) as db:
            job, _ = lifecycle.create(db, AnalysisConfig.model_validate(small_job()), owner="", idempotency_key=None)
            attempt = lifecycle.claim(db, job.id, worker="w", stale_after=180).attempt  # type: ignore[union-attr]
        config = AnalysisConfig.model_validate(small_job())
        assert shards.plan(job.id, attempt, config, s, lambda *a: sent.append(a)) is sharded
    assert sent and sent[0][2] == [(0, 150), (150, 300), (300, 400)]


def test_the_job_json_shows_images_done_total_and_eta_during_extraction(harness) -> None:
    import threading
    import time

    from redundancy import ProgressEvent
    from tests.service.conftest import fake_analysis, fake_report

    release = threading.Event()

    def engine(config, runtime=None, progress=None, should_stop=None):  # type: ignore[no-untyped-def]
        progress(ProgressEvent("extract", 0.0, 0.05))
        time.sleep(0.3)
        progress(ProgressEvent("extract", 0.3, 0.2, images_done=120, images_total=400))
        release.wait(20)
        return fake_analysis(fake_report(config))

    harness.engine = engine
    job_id = harness.submit()["id"]
    before = harness.client.get(f"/v1/jobs/{job_id}").json()
    assert (before["images_done"], before["images_total"], before["eta_s"]) == (None, None, None)
    runner = threading.Thread(target=harness.run_all)
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            job = harness.client.get(f"/v1/jobs/{job_id}").json()
            if job["images_done"] is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert (job["images_done"], job["images_total"]) == (120, 400)
        assert job["eta_s"] is not None and job["eta_s"] >= 0
    finally:
        release.set()
        runner.join(20)
    assert harness.client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
