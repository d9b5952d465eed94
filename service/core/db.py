"""Engines and sessions, one engine per database URL per process (SQLite or Postgres)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_makers: dict[str, sessionmaker[Session]] = {}
_pool: dict[str, float] = {"pool_size": 5, "pool_timeout": 30.0}


def size_pool(threads: int, timeout: float) -> None:
    """Size the pools of engines created from now on to ``threads`` concurrent users (plus 4 for the
    maintenance sweep and readiness), with no overflow, and a short ``timeout``: a request never waits
    long for a connection (it is answered 503 instead, see ``service.api.errors``). The API calls this
    with its thread count; engines opened before (e.g. by the migrations) are replaced."""
    wanted = {"pool_size": threads + 4, "pool_timeout": timeout}
    if wanted != _pool:
        _pool.update(wanted)
        dispose_all()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str) -> Engine:
    """A new engine for ``url`` (SQLite gets WAL, a busy timeout and foreign keys)."""
    if url.startswith("sqlite"):
        db = sa.engine.make_url(url).database
        pool: dict[str, float] = {}
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
            pool = {"pool_size": int(_pool["pool_size"]), "max_overflow": 0, "pool_timeout": _pool["pool_timeout"]}
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=int(_pool["pool_size"]), max_overflow=0,
                            pool_timeout=_pool["pool_timeout"], connect_args={"connect_timeout": 5})


def get_engine(url: str) -> Engine:
    with _lock:
        if url not in _engines:
            _engines[url] = make_engine(url)
            _makers[url] = sessionmaker(_engines[url], expire_on_commit=False)
        return _engines[url]


def get_sessionmaker(url: str) -> sessionmaker[Session]:
    get_engine(url)
    return _makers[url]


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = get_sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_all() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _makers.clear()


def forget_inherited() -> None:
    """In a forked child: drop the connections its engines' pools inherited from the parent without closing
    them (they are the parent's, still in use there: the worker's presence beats and startup sweep), so the
    child opens its own (SQLAlchemy's advice for ``os.fork``)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=False)


def hold_owner(session: Session, scope: int, owner: str) -> None:
    """Hold ``owner``'s place in ``scope`` until this transaction ends, so that a count of its rows and an
    insert of one are one step (a quota). Postgres: a transaction-scoped advisory lock, ``(scope,
    hashtext(owner))``. SQLite: nothing to take here: the insert that follows takes the database's write
    lock, which another writer waits for, so a count after the insert sees every committed row."""
    if session.get_bind().dialect.name != "sqlite":
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(scope, sa.func.hashtext(owner))))
