"""Submission in the core (`service.core.submission`) and the one δ rule (`service.core.deltas`) that every
read route uses: each checked directly and through the routes that call it."""

from __future__ import annotations

import math
from typing import Any

import pytest

from redundancy.config import AnalysisConfig
from service.core import submission
from service.core.db import session_scope
from service.core.deltas import DEFAULT_DELTA, resolve_delta
from service.core.errors import InvalidInput, TooManyActiveJobs
from service.core.models import Job
from tests.service.conftest import RecordingQueue, small_job


class BrokenQueue:
    def enqueue(self, job_id: str) -> None:
        raise ConnectionError("broker down")


def test_default_delta_is_the_engines_first_default() -> None:
    config = AnalysisConfig.model_validate({"model": {"name": "resnet18"}, "dataset": {"spec": "digits"}})
    assert DEFAULT_DELTA == config.deltas[0] == 0.01


@pytest.mark.parametrize(("delta", "job_deltas", "want"), [
    (None, [0.05, 0.1], 0.05), (None, None, 0.01), (None, [], 0.01), (0.0, [0.5], 0.0), (0.999, None, 0.999)])
def test_resolve_delta_defaults(delta: float | None, job_deltas: list[float] | None, want: float) -> None:
    assert resolve_delta(delta, job_deltas) == want


@pytest.mark.parametrize("delta", [-0.01, 1.0, 5.0, math.nan, math.inf])
def test_resolve_delta_refuses_out_of_range(delta: float) -> None:
    with pytest.raises(InvalidInput) as err:
        resolve_delta(delta, [0.05])
    assert err.value.field == "delta" and "outside [0, 1)" in err.value.reason


def test_every_read_route_answers_a_bad_delta_alike(harness: Any) -> None:
    job = harness.submit(small_job())
    harness.run_all()
    c = harness.client
    base = f"/v1/jobs/{job['id']}"
    for url in (f"{base}/recommendation?delta=1.5", f"{base}/artifact?delta=1.5", f"{base}/artifact/card?delta=1.5",
                f"{base}/plot.svg?delta=1.5", "/v1/recommendations?model=resnet18&dataset=digits&delta=1.5",
                "/v1/recommendations?model=resnet18&dataset=digits&dataset=other&delta=1.5"):
        r = c.get(url)
        assert r.status_code == 422, (url, r.text)
        assert [(e["field"], e["location"]) for e in r.json()["errors"]] == [("delta", "query")], url
    # Without δ, the job's first δ (the small job asks 0.01 and 0.05).
    assert c.get(f"{base}/recommendation").json()["delta"] == small_job()["deltas"][0]


def test_quota_refuses_a_new_job_but_not_a_replay(settings: Any) -> None:
    settings = settings.model_copy(update={"max_active_jobs": 1})
    config = AnalysisConfig.model_validate(small_job())
    queue = RecordingQueue()
    with session_scope(settings.db_url) as s:
        first, created = submission.submit(s, config, owner="o", idempotency_key="k1", callback_url=None,
                                           queue=queue, settings=settings)
        assert created and queue.sent == [first.id] and first.enqueue_count == 1
        again, created = submission.submit(s, config, owner="o", idempotency_key="k1", callback_url=None,
                                           queue=queue, settings=settings)
        assert (again.id, created, queue.sent) == (first.id, False, [first.id])  # replay: no quota, no send
        with pytest.raises(TooManyActiveJobs):
            submission.submit(s, config, owner="o", idempotency_key="k2", callback_url=None, queue=queue,
                              settings=settings)
        # Another owner has its own quota.
        assert submission.submit(s, config, owner="p", idempotency_key=None, callback_url=None, queue=queue,
                                 settings=settings)[1]


def test_a_failed_enqueue_leaves_the_job_queued_and_unsent(settings: Any) -> None:
    config = AnalysisConfig.model_validate(small_job())
    with session_scope(settings.db_url) as s:
        job, created = submission.submit(s, config, owner="o", idempotency_key=None, callback_url=None,
                                         queue=BrokenQueue(), settings=settings)
        assert created
        row = s.get(Job, job.id)
        assert row is not None and (row.status, row.enqueue_count, row.enqueued_at) == ("queued", 0, None)
