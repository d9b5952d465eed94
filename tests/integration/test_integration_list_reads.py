"""The list of jobs reads its page in one statement without a transaction (issue 23: fewer round trips
under load), and the pooled connection it used goes back to the next session transactional; the rendered
pages equal the slow path's; and the active-jobs quota counts and inserts in one step, on each database."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from service.core import queries
from service.core.db import get_sessionmaker, session_scope
from service.core.models import Job
from service.core.status import JobStatus
from tests.service.job_rows import assert_pages_match_the_slow_path

OWNER = "list-reads"


def _job(i: int, t0: dt.datetime) -> Job:
    return Job(id=f"00000000-0000-0000-0000-{i:012d}", owner=OWNER, status=JobStatus.QUEUED, progress=0.0,
               request={"i": i}, config_hash="x", model_name="m", dataset_spec="d", cancel_requested=False,
               enqueue_count=0, attempts=0, created_at=t0 + dt.timedelta(seconds=i))


def _autocommit(dbapi: object) -> bool:
    """Whether the driver's connection runs each statement on its own (psycopg; sqlite3)."""
    if type(dbapi).__module__.startswith("sqlite3"):
        return dbapi.isolation_level is None  # type: ignore[attr-defined]
    return dbapi.autocommit is True  # type: ignore[attr-defined]


@pytest.mark.integration
def test_a_page_is_read_in_autocommit_and_the_next_session_on_its_connection_is_transactional(
        core_db_url: str) -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with session_scope(core_db_url) as s:
        s.add_all([_job(i, t0) for i in range(3)])
    maker = get_sessionmaker(core_db_url)

    reader = queries.one_statement_read(maker())
    conn = reader.connection()
    dbapi = conn.connection.dbapi_connection
    assert _autocommit(dbapi)
    rows, token = queries.list_jobs(reader, OWNER, page_size=2, page_token=None, status=None, model=None,
                                    dataset=None)
    assert [r.request["i"] for r in rows] == [2, 1] and token is not None
    rows, token = queries.list_jobs(reader, OWNER, page_size=2, page_token=token, status=None, model=None,
                                    dataset=None)
    assert [r.request["i"] for r in rows] == [0] and token is None
    reader.close()

    writer = maker()
    try:
        wconn = writer.connection()
        assert wconn.connection.dbapi_connection is dbapi, "the pool should hand back the reader's connection"
        assert not _autocommit(dbapi)
        writer.add(_job(9, t0))
        writer.flush()
        writer.rollback()  # transactional again: the insert is undone
    finally:
        writer.close()
    with session_scope(core_db_url) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.owner == OWNER)) == 3


@pytest.mark.integration
def test_rendered_pages_equal_the_slow_path_on_each_database(core_db_url: str) -> None:
    """Postgres gives the JSON columns back as jsonb's own text (keys reordered, spaces added): decoded, the
    same values, so the same page byte for byte (``service.api.job_pages``)."""
    assert assert_pages_match_the_slow_path(core_db_url, "pages") >= 20


@pytest.mark.integration
def test_two_submissions_racing_for_the_last_active_place_one_wins(core_db_url: str, monkeypatch) -> None:
    """ADVISOR_MAX_ACTIVE_JOBS on each database: the count taken after the insert, the owner's place held
    (Postgres: an advisory lock; SQLite: the insert's write lock), so of two submissions at max - 1 that both
    counted max - 1 before, exactly one is created."""
    from redundancy.config import AnalysisConfig
    from service.core import lifecycle
    from tests.service.conftest import small_job
    from tests.service.upload_race import Rendezvous, race

    maker = get_sessionmaker(core_db_url)

    def over(active: int) -> None:
        if active > 2:
            raise RuntimeError("over")

    def submit(seeds: int) -> object:
        with maker() as s:
            return lifecycle.create(s, AnalysisConfig.model_validate(small_job(seeds=seeds)), owner="race",
                                    idempotency_key=None, within=over)[1]

    assert submit(1) is True
    meet = Rendezvous()
    real = lifecycle.active_jobs

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003
        out = real(*args, **kwargs)
        meet.wait()
        return out

    monkeypatch.setattr(lifecycle, "active_jobs", counted)
    out = race(lambda: submit(2), lambda: submit(3))
    assert sorted(map(repr, out)) == sorted([repr(True), repr(RuntimeError("over"))]), out
    with session_scope(core_db_url) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.owner == "race")) == 2
