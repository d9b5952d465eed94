"""Every job transition of `service.core.lifecycle`, straight against SQLite and Postgres: no HTTP client,
no worker. Each transition is a conditional UPDATE; these tests check that it moves the job when its
fence holds and leaves it alone when it does not (a stale attempt, a wrong status, another owner)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from redundancy.advice.recommend import summarize
from redundancy.config import AnalysisConfig
from redundancy.report import CurvePoint, DatasetInfo, Environment, ModelInfo, Report
from redundancy.verdict import advise
from service.api.schemas import SMALL_JOB_EXAMPLE
from service.core import lifecycle, queries, results
from service.core.errors import AlreadyFinished, IdempotencyConflict, JobNotFound, NotFinished, NotSucceeded
from service.core.models import CurvePointRow, Job, JobResult, RecommendationRow
from service.core.status import JobStatus, status_check_sql
from tests.service.conftest import single_layer

CONFIG = AnalysisConfig.model_validate(SMALL_JOB_EXAMPLE)
OWNER = "owner-a"
STALE = 180.0


def _report(config: AnalysisConfig = CONFIG, d: int = 8) -> Report:
    classes = ["a", "b"]
    curve = [
        CurvePoint(fraction=f, k=max(1, round(f * d)), seed=s, accuracy=0.5 + 0.4 * f - 0.01 * s,
                   per_class_accuracy=[0.6 + 0.3 * f, 0.4 + 0.5 * f - 0.02 * s], cka=f, lam=1.0)
        for f in config.fractions for s in range(1 if f == 1.0 else config.seeds)
    ]
    summary = summarize(curve)
    return Report(
        config=config,
        model=ModelInfo(name=config.model.name, weights_source="random", weights_identity="t", weights_random=True,
                        layer="head", layer_pooling="avg", d=d, input_size=[3, 32, 32]),
        dataset=DatasetInfo(spec=config.dataset.spec, classes=classes, sizes={"train": 4, "val": 1, "test": 2}),
        full_accuracy=next(x for x in summary if x.k == d).accuracy_mean,
        curve=curve,
        summary=summary,
        recommendations=[advise(curve, classes, d, dl, config.delta_mode, config.criterion)
                         for dl in config.deltas],
        timings={"extract": 0.5, "probe": 0.25},
        environment=Environment(device="cpu", amp=False, torch="x", timm="x", numpy="x", python="3.11",
                                code_version="test", feature_cache_hit=False),
    )


def _new(session: Session, key: str | None = None) -> Job:
    job, created = lifecycle.create(session, CONFIG, owner=OWNER, idempotency_key=key)
    assert created
    return job


def _running(session: Session) -> tuple[Job, int]:
    job = _new(session)
    claim = lifecycle.claim(session, job.id, worker="w1", stale_after=STALE)
    assert claim is not None
    return job, claim.attempt


def _reload(session: Session, job_id: str) -> Job:
    session.expire_all()
    job = session.get(Job, job_id)
    assert job is not None
    return job


def _age_heartbeat(session: Session, job_id: str, seconds: float = STALE + 60) -> dt.datetime:
    """Pretend the worker's last heartbeat was ``seconds`` ago; returns the sweep's stale-before time."""
    now = dt.datetime.now(dt.UTC)
    session.execute(sa.update(Job).where(Job.id == job_id).values(heartbeat_at=now - dt.timedelta(seconds=seconds)))
    session.commit()
    return now - dt.timedelta(seconds=STALE)


def _count(session: Session, model: type) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


# ---------------------------------------------------------------------------------------------
# the status column


def test_status_column_accepts_exactly_the_enum(session):
    job = _new(session)
    assert _reload(session, job.id).status is JobStatus.QUEUED
    for status in JobStatus:
        session.execute(sa.text("UPDATE jobs SET status = :s WHERE id = :i"), {"s": status.value, "i": job.id})
        session.commit()
    with pytest.raises(IntegrityError):
        session.execute(sa.text("UPDATE jobs SET status = 'paused' WHERE id = :i"), {"i": job.id})
        session.commit()
    session.rollback()


def test_check_constraint_is_generated_from_the_enum(session):
    checks = sa.inspect(session.get_bind()).get_check_constraints("jobs")
    (valid,) = [c for c in checks if c["name"] == "ck_jobs_status_valid"]
    for status in JobStatus:
        assert f"'{status.value}'" in valid["sqltext"]
    assert status_check_sql() == "status IN ('queued','running','succeeded','failed','cancelled')"


# ---------------------------------------------------------------------------------------------
# create, idempotency, sending


def test_create_is_queued_and_idempotent(session):
    job = _new(session, key="k1")
    assert (job.status, job.attempts, job.enqueue_count, job.progress) == (JobStatus.QUEUED, 0, 0, 0.0)
    again, created = lifecycle.create(session, CONFIG, owner=OWNER, idempotency_key="k1")
    assert not created and again.id == job.id
    other, created = lifecycle.create(session, CONFIG, owner="owner-b", idempotency_key="k1")
    assert created and other.id != job.id, "keys are per owner"
    with pytest.raises(IdempotencyConflict) as err:
        lifecycle.create(session, CONFIG.model_copy(update={"seeds": 3}), owner=OWNER, idempotency_key="k1")
    assert err.value.job_id == job.id


def test_mark_sent_is_fenced_by_the_send_count(session):
    job = _new(session)
    assert lifecycle.mark_sent(session, job.id, seen_count=0)
    assert not lifecycle.mark_sent(session, job.id, seen_count=0), "someone else resent it since"
    assert lifecycle.mark_sent(session, job.id)
    got = _reload(session, job.id)
    assert got.enqueue_count == 2 and got.enqueued_at is not None
    assert lifecycle.unmark_sent(session, job.id)
    assert _reload(session, job.id).enqueued_at is None
    lifecycle.claim(session, job.id, worker="w", stale_after=STALE)
    assert not lifecycle.mark_sent(session, job.id), "only a queued job is sent"


# ---------------------------------------------------------------------------------------------
# claim and heartbeat


def test_claim_once_then_duplicate_messages_find_nothing(session):
    job = _new(session)
    claim = lifecycle.claim(session, job.id, worker="w1", stale_after=STALE)
    assert claim is not None and claim.attempt == 1 and claim.request == CONFIG.model_dump(mode="json")
    assert lifecycle.claim(session, job.id, worker="w2", stale_after=STALE) is None
    got = _reload(session, job.id)
    assert (got.status, got.worker, got.attempts) == (JobStatus.RUNNING, "w1", 1)
    assert lifecycle.claim(session, "no-such-job", worker="w", stale_after=STALE) is None


def test_claim_takes_over_a_stale_job_unless_cancel_was_asked(session):
    job, attempt = _running(session)
    _age_heartbeat(session, job.id)
    second = lifecycle.claim(session, job.id, worker="w2", stale_after=STALE)
    assert second is not None and second.attempt == attempt + 1
    _age_heartbeat(session, job.id)
    lifecycle.cancel(session, job.id, OWNER)
    assert lifecycle.claim(session, job.id, worker="w3", stale_after=STALE) is None


def test_heartbeat_writes_progress_and_answers_go_on(session):
    job, attempt = _running(session)
    assert lifecycle.heartbeat(session, job.id, attempt, progress=0.4, stage="extract", message="batch 2/5",
                               stage_timings={"load_model": 1.5})
    got = _reload(session, job.id)
    assert (got.progress, got.stage, got.message, got.stage_timings) == (0.4, "extract", "batch 2/5",
                                                                         {"load_model": 1.5})
    assert not lifecycle.heartbeat(session, job.id, attempt + 1, progress=0.9, stage="probe", message=None,
                                   stage_timings={}), "another attempt holds it"
    assert _reload(session, job.id).progress == 0.4, "a stale attempt writes nothing"
    lifecycle.cancel(session, job.id, OWNER)
    assert not lifecycle.heartbeat(session, job.id, attempt, progress=0.5, stage=None, message=None,
                                   stage_timings={}), "cancel requested: stop"


# ---------------------------------------------------------------------------------------------
# cancel


def test_cancel_queued_is_immediate_and_running_is_a_request(session):
    queued = _new(session)
    got = lifecycle.cancel(session, queued.id, OWNER)
    assert got.status == JobStatus.CANCELLED and got.finished_at is not None and got.cancel_requested
    assert lifecycle.cancel(session, queued.id, OWNER).status == JobStatus.CANCELLED, "idempotent"
    assert lifecycle.claim(session, queued.id, worker="w", stale_after=STALE) is None, "never starts"
    running, _ = _running(session)
    got = lifecycle.cancel(session, running.id, OWNER)
    assert got.status == JobStatus.RUNNING and got.cancel_requested and got.finished_at is None


def test_cancel_finished_or_foreign_job_raises(session):
    job, attempt = _running(session)
    lifecycle.fail(session, job.id, attempt, code="x", message="y")
    with pytest.raises(AlreadyFinished) as err:
        lifecycle.cancel(session, job.id, OWNER)
    assert err.value.status == JobStatus.FAILED
    with pytest.raises(JobNotFound):
        lifecycle.cancel(session, job.id, "owner-b")


# ---------------------------------------------------------------------------------------------
# succeed, fail, finish_cancelled


def test_succeed_writes_the_rows_and_the_status_together(session):
    job, attempt = _running(session)
    report = _report()
    assert lifecycle.succeed(session, job.id, attempt, report, {"extract": 9.0})
    got = _reload(session, job.id)
    assert (got.status, got.stage, got.progress) == (JobStatus.SUCCEEDED, "done", 1.0)
    assert got.stage_timings == report.timings, "the engine's timings win"
    assert results.curve_of(session, job.id) == report.curve
    stored = results.load_report(session, got)
    assert stored["recommendations"] == [r.model_dump(mode="json", by_alias=True) for r in report.recommendations]
    rec = results.recommend_for(session, got, delta=0.3, delta_mode="absolute", criterion=None)
    assert rec == single_layer(advise(report.curve, report.dataset.classes, report.model.d, 0.3, "absolute", "mean"),
                               report.model.layer)


def test_succeed_of_a_lost_attempt_writes_nothing(session):
    job, attempt = _running(session)
    _age_heartbeat(session, job.id)
    assert lifecycle.claim(session, job.id, worker="w2", stale_after=STALE) is not None
    assert not lifecycle.succeed(session, job.id, attempt, _report(), {})
    assert _reload(session, job.id).status == JobStatus.RUNNING
    assert _count(session, JobResult) == _count(session, CurvePointRow) == _count(session, RecommendationRow) == 0


def test_succeed_that_fails_midway_leaves_no_rows(session, monkeypatch):
    job, attempt = _running(session)

    real = results.store_report

    def half_then_crash(s: Session, job_id: str, report: Report) -> None:
        real(s, job_id, report)
        s.flush()
        raise OSError("disk full")

    monkeypatch.setattr(results, "store_report", half_then_crash)
    with pytest.raises(OSError):
        lifecycle.succeed(session, job.id, attempt, _report(), {})
    assert _reload(session, job.id).status == JobStatus.RUNNING
    assert _count(session, JobResult) == _count(session, CurvePointRow) == 0
    with pytest.raises(NotSucceeded):
        results.load_report(session, _reload(session, job.id))


def test_fail_and_finish_cancelled_are_fenced_by_attempt(session):
    job, attempt = _running(session)
    assert not lifecycle.fail(session, job.id, attempt + 1, code="late", message="from a lost worker")
    assert lifecycle.fail(session, job.id, attempt, code="unknown_layer", message="no layer 'x'", field="layer",
                          stage_timings={"load_model": 0.1})
    got = _reload(session, job.id)
    assert (got.status, got.error_code, got.error_field) == (JobStatus.FAILED, "unknown_layer", "layer")
    assert got.finished_at is not None
    assert not lifecycle.finish_cancelled(session, job.id, attempt, None), "finished stays finished"
    other, attempt = _running(session)
    assert lifecycle.finish_cancelled(session, other.id, attempt, {"extract": 1.0})
    got = _reload(session, other.id)
    assert got.status == JobStatus.CANCELLED and got.message == "cancelled while running"


# ---------------------------------------------------------------------------------------------
# the maintenance sweep's transitions


def test_stale_transitions_need_a_stale_heartbeat_and_the_same_attempt(session):
    job, attempt = _running(session)
    stale_before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=STALE)
    for transition in (lifecycle.requeue_stale, lifecycle.fail_stale, lifecycle.cancel_stale):
        assert not transition(session, job.id, attempt, stale_before), "fresh heartbeat"
    stale_before = _age_heartbeat(session, job.id)
    for transition in (lifecycle.requeue_stale, lifecycle.fail_stale, lifecycle.cancel_stale):
        assert not transition(session, job.id, attempt + 1, stale_before), "another attempt"
    assert lifecycle.requeue_stale(session, job.id, attempt, stale_before)
    got = _reload(session, job.id)
    assert (got.status, got.enqueued_at, got.progress) == (JobStatus.QUEUED, None, 0.0)
    assert job.id in queries.unsent_jobs(session)


def test_fail_stale_and_cancel_stale(session):
    a, attempt_a = _running(session)
    b, attempt_b = _running(session)
    stale_before = _age_heartbeat(session, a.id)
    _age_heartbeat(session, b.id)
    assert {r.id for r in queries.stale_running_jobs(session, stale_before)} == {a.id, b.id}
    assert lifecycle.fail_stale(session, a.id, attempt_a, stale_before)
    got = _reload(session, a.id)
    assert got.status == JobStatus.FAILED and got.error_code == "worker_lost"
    assert lifecycle.cancel_stale(session, b.id, attempt_b, stale_before)
    assert _reload(session, b.id).status == JobStatus.CANCELLED


# ---------------------------------------------------------------------------------------------
# delete


def test_delete_only_finished_jobs_of_their_owner(session):
    job, attempt = _running(session)
    with pytest.raises(NotFinished):
        lifecycle.delete(session, job.id, OWNER)
    assert lifecycle.succeed(session, job.id, attempt, _report(), {})
    with pytest.raises(JobNotFound):
        lifecycle.delete(session, job.id, "owner-b")
    lifecycle.delete(session, job.id, OWNER)
    with pytest.raises(JobNotFound):
        queries.get_job(session, job.id, OWNER)
    assert _count(session, JobResult) == _count(session, CurvePointRow) == _count(session, RecommendationRow) == 0
