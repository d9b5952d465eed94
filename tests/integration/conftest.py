"""Integration fixtures: a dedicated Postgres database, a dedicated Redis queue, a real Celery worker.

Environment (all optional):
  ADVISOR_TEST_PG_ADMIN   admin URL used to create/drop the test database
                          (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)
  ADVISOR_TEST_REDIS      Redis URL without db (default redis://127.0.0.1:6379)
  ADVISOR_TEST_REDIS_DB   Redis db number for the broker (default 13)

Skips (with the reason) when Postgres or Redis is unreachable; CI starts them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.api.schemas import SMALL_JOB_EXAMPLE
from service.core import migrate
from service.core.db import dispose_all, get_sessionmaker
from tests.integration.processes import ROOT

PG_ADMIN = os.environ.get("ADVISOR_TEST_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("ADVISOR_TEST_REDIS", "redis://127.0.0.1:6379").rstrip("/")
REDIS_DB = int(os.environ.get("ADVISOR_TEST_REDIS_DB", "13"))

SMALL_JOB: dict[str, Any] = SMALL_JOB_EXAMPLE  # random weights, digits at 32 px: seconds per job


def _pg_reachable() -> str | None:
    try:
        engine = sa.create_engine(PG_ADMIN, connect_args={"connect_timeout": 3})
        with engine.connect() as c:
            c.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        return f"Postgres unreachable at {PG_ADMIN}: {type(exc).__name__}: {str(exc)[:120]}"
    return None


def _redis_reachable() -> str | None:
    import redis

    try:
        redis.Redis.from_url(f"{REDIS}/{REDIS_DB}", socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        return f"Redis unreachable at {REDIS}: {type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def services() -> None:
    reason = _pg_reachable() or _redis_reachable()
    if reason:
        pytest.skip(reason)


@contextlib.contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new, randomly named, empty Postgres database (dropped afterwards); yields its URL."""
    name = f"advisor_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    finally:
        dispose_all()
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_url(services: None) -> Iterator[str]:
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def core_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database of each kind (Postgres: a fresh random one; skipped when unreachable)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'core.sqlite'}"
        migrate.upgrade(url)
        yield url
        dispose_all()
        return
    reason = _pg_reachable()
    if reason:
        pytest.skip(reason)
    with fresh_pg_database() as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture
def session(core_db_url: str) -> Iterator[Session]:
    """A session on each kind of core database, closed after the test."""
    s = get_sessionmaker(core_db_url)()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def queue_name() -> str:
    return f"advisor-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def stack_env(pg_url: str, queue_name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data_dir = tmp_path_factory.mktemp("advisor-data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVISOR_")}
    env.update({
        "DATABASE_URL": pg_url,
        "BROKER_URL": f"{REDIS}/{REDIS_DB}",
        "DATA_DIR": str(data_dir),
        "ADVISOR_QUEUE": queue_name,
        "ADVISOR_HEARTBEAT": "0.5",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    })
    yield env
    import redis

    r = redis.Redis.from_url(f"{REDIS}/{REDIS_DB}")
    for key in r.scan_iter(f"*{queue_name}*"):
        r.delete(key)


@pytest.fixture(scope="session")
def migrated(stack_env: dict[str, str]) -> None:
    """`advisor db upgrade` against the test database, as a user would run it."""
    out = subprocess.run([sys.executable, "-m", "service.cli", "db", "upgrade"], env=stack_env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.fixture(scope="session")
def worker(stack_env: dict[str, str], migrated: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real Celery worker process: `celery -A workers.celery_app worker --pool=solo` on our queue."""
    from tests.integration.processes import start_celery_worker, stop_process

    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = start_celery_worker(stack_env, stack_env["ADVISOR_QUEUE"], log, f"test-{stack_env['ADVISOR_QUEUE']}")
    time.sleep(0.5)
    yield log
    stop_process(proc)  # SIGTERM: warm shutdown
    if proc.returncode not in (0, -15):
        print(log.read_text()[-4000:])


@pytest.fixture(scope="session")
def settings(stack_env: dict[str, str]):  # type: ignore[no-untyped-def]
    from service.core.config import Settings

    return Settings(
        database_url=stack_env["DATABASE_URL"],
        broker_url=stack_env["BROKER_URL"],
        data_dir=Path(stack_env["DATA_DIR"]),
        queue=stack_env["ADVISOR_QUEUE"],
        heartbeat=0.5,
        maintenance_interval=0,
    )


@pytest.fixture(scope="session")
def client(settings, worker):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from service.main import create_app

    with TestClient(create_app(settings)) as c:
        yield c


def wait_for(client: Any, job_id: str, statuses: set[str], timeout: float = 180.0,
             worker_log: Path | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            tail = worker_log.read_text()[-3000:] if worker_log else ""
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s: {job}\n{tail}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def wait(worker: Path):  # type: ignore[no-untyped-def]
    """`wait(client, job_id, {"succeeded"}, timeout=...)`: poll until the job reaches a status."""

    def _wait(client: Any, job_id: str, statuses: set[str], timeout: float = 180.0) -> dict[str, Any]:
        return wait_for(client, job_id, statuses, timeout, worker)

    return _wait


@pytest.fixture
def small_job() -> dict[str, Any]:
    import copy

    return copy.deepcopy(SMALL_JOB)
