"""Service settings, read from the environment (pydantic-settings).

With no environment at all the service is *embedded*: a SQLite database and a SQLite-backed Celery
broker under ``DATA_DIR`` (default ``./.advisor``), and ``advisor serve`` starts a worker next to the
API. Production sets ``DATABASE_URL`` (Postgres, psycopg 3) and ``BROKER_URL`` (Redis).

Environment variables (all optional):

==============================  =============================================================
``DATA_DIR``                    Local data directory: embedded databases, feature cache
                                (``cache/features``), datasets (``datasets``), checkpoints.
``DATABASE_URL``                SQLAlchemy URL, e.g. ``postgresql+psycopg://u:p@db:5432/advisor``.
                                ``postgresql://`` and ``postgres://`` are accepted and mapped to
                                psycopg 3. Default: ``sqlite:///$DATA_DIR/advisor.sqlite``.
``BROKER_URL``                  Celery broker, e.g. ``redis://redis:6379/0``. Default:
                                ``sqla+sqlite:///$DATA_DIR/broker.sqlite`` (embedded).
``ADVISOR_QUEUE``               Queue the jobs go to and the worker consumes (default
                                ``analysis``; the compose file uses ``gpu``).
``ADVISOR_API_KEYS``            Comma-separated API keys, plain or ``sha256:<hex>``. Empty: no
                                auth. When set, every ``/v1`` call needs ``X-API-Key`` or
                                ``Authorization: Bearer``, and a key sees only its own jobs.
``ADVISOR_DEVICE``              ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``...
``ADVISOR_ALLOW_DOWNLOAD``      Let the engine download hub weights/datasets (default false).
``ADVISOR_TASK_SOFT_TIME_LIMIT`` Seconds before a job is stopped and failed (default 21600).
``ADVISOR_TASK_TIME_LIMIT``     Hard kill after this many seconds (default soft + 300).
``ADVISOR_REQUEUE_AFTER``       A queued job not picked up for this long is enqueued again
                                (lost message); backs off x2 per retry (default 120).
``ADVISOR_STALE_AFTER``         A running job without heartbeat for this long is requeued
                                (dead worker) (default 20); at once when its worker process is
                                known dead (same host, pid gone).
``ADVISOR_HEARTBEAT``           Seconds between the worker's progress/heartbeat writes (2).
``ADVISOR_API_THREADS``         Threads per API process for sync routes; the DB pool holds this many
                                connections plus 4 (default 32). Postgres needs ``max_connections``
                                above ``--workers`` x (threads + 4) + workers.
``ADVISOR_DB_POOL_TIMEOUT``     Seconds a request waits for a connection before 503 (default 2).
``ADVISOR_RETRY_AFTER``         ``Retry-After`` seconds sent with 503 (default 2).
``ADVISOR_RESULT_CACHE_TTL``    Seconds finished results/recommendations/plots stay cached (60).
``ADVISOR_LIST_CACHE_TTL``      Seconds a page of finished jobs stays cached (2).
``ADVISOR_CACHE_MAX_BYTES``     In-process cache size per API process (64 MiB).
``ADVISOR_WORKER_LOCK_WAIT``    Seconds an embedded worker waits for the data dir's lock (30).
``ADVISOR_EMBEDDED_WORKER``     Force ``advisor serve`` to start (true) or not start (false) a
                                worker subprocess; default: only when ``BROKER_URL`` is unset.
==============================  =============================================================
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def hash_api_key(key: str) -> str:
    """How keys are kept at rest (settings may hold hashes; jobs store the owner's hash)."""
    return hashlib.sha256(key.encode()).hexdigest()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADVISOR_", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(Path(".advisor"), validation_alias=AliasChoices("DATA_DIR", "ADVISOR_DATA_DIR", "data_dir"))
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", "ADVISOR_DATABASE_URL", "database_url")
    )
    broker_url: str | None = Field(
        None, validation_alias=AliasChoices("BROKER_URL", "ADVISOR_BROKER_URL", "broker_url")
    )
    queue: str = "analysis"
    api_keys: str = ""
    device: str = "auto"
    allow_download: bool = False
    task_soft_time_limit: int = 6 * 3600
    task_time_limit: int | None = None
    requeue_after: float = 120.0
    stale_after: float = 20.0
    heartbeat: float = 2.0
    embedded_worker: bool | None = None
    broker_polling_interval: float = 0.5
    maintenance_interval: float = 5.0

    # ---- reliability (issue 9) -----------------------------------------------------------
    api_threads: int = 32
    """Threads serving sync routes in one API process (AnyIO's limiter); the DB pool is sized to it."""
    db_pool_timeout: float = 2.0
    """Seconds a request waits for a database connection before it is answered 503 + Retry-After."""
    retry_after: int = 2
    """The ``Retry-After`` (seconds) sent with a 503."""
    result_cache_ttl: float = 60.0
    """Seconds a finished job's result, recommendation or plot stays in the API's in-process cache (a
    delete in another API process is seen after at most this long)."""
    list_cache_ttl: float = 2.0
    """Seconds a page of finished jobs (``?status=succeeded|failed|cancelled``) stays cached."""
    cache_max_bytes: int = 64 * 2**20
    """Bytes of cached bodies per API process (least recently used evicted first)."""
    worker_lock_wait: float = 30.0
    """Seconds an embedded worker waits for the data directory's worker lock (a dying one holds it)."""

    # ---- derived -------------------------------------------------------------------------
    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def db_url(self) -> str:
        if self.database_url:
            url = self.database_url
            for prefix in ("postgres://", "postgresql://"):
                if url.startswith(prefix):
                    return "postgresql+psycopg://" + url[len(prefix) :]
            return url
        return f"sqlite:///{self.data_path / 'advisor.sqlite'}"

    @property
    def broker(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_path / 'broker.sqlite'}"

    @property
    def embedded(self) -> bool:
        """No broker configured: SQLite broker, and `serve` runs a worker itself."""
        return not self.broker_url

    @property
    def start_worker_with_api(self) -> bool:
        return self.embedded if self.embedded_worker is None else self.embedded_worker

    @property
    def hard_time_limit(self) -> int:
        return self.task_time_limit or self.task_soft_time_limit + 300

    @property
    def api_key_hashes(self) -> frozenset[str]:
        out = set()
        for raw in self.api_keys.split(","):
            key = raw.strip()
            if not key:
                continue
            out.add(key[len("sha256:") :].lower() if key.startswith("sha256:") else hash_api_key(key))
        return frozenset(out)

    @property
    def cache_dir(self) -> Path:
        return self.data_path / "cache" / "features"

    @property
    def datasets_dir(self) -> Path:
        return self.data_path / "datasets"

    @property
    def checkpoints_dir(self) -> Path:
        return self.data_path / "checkpoints"

    def ensure_dirs(self) -> None:
        for p in (self.data_path, self.cache_dir, self.datasets_dir, self.checkpoints_dir):
            p.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    return Settings()
