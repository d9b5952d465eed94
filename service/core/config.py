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
                                (dead worker) (default 180).
``ADVISOR_HEARTBEAT``           Seconds between the worker's progress/heartbeat writes (2).
``ADVISOR_EMBEDDED_WORKER``     Force ``advisor serve`` to start (true) or not start (false) a
                                worker subprocess; default: only when ``BROKER_URL`` is unset.
``ADVISOR_SHARD_SIZE``          A job with more images (train + val + test) runs its extraction as
                                a Celery chord of shards of this many rows (default 1,000,000).
``ADVISOR_SHARD_RETRIES``       Retries of a failed shard, alone, before its job fails (3).
``ADVISOR_ARTIFACT_DIR``        Artifact store for shard statistics and feature slices: a
                                directory or an fsspec URL (default ``$DATA_DIR/artifacts``).
``ADVISOR_RESULT_BACKEND_URL``  Celery result backend for the chord (default: ``db+sqlite`` under
                                ``DATA_DIR`` when embedded, else the Redis broker).
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
    stale_after: float = 180.0
    heartbeat: float = 2.0
    embedded_worker: bool | None = None
    broker_polling_interval: float = 0.5
    maintenance_interval: float = 15.0

    # ---- sharding (issue 13) ------------------------------------------------------------
    shard_size: int = Field(1_000_000, ge=1)  # rows (train + val + test images) per shard
    shard_retries: int = Field(3, ge=0)  # retries of a failed shard, alone, before the job fails
    artifact_dir: str | None = None  # the artifact store: a directory or an fsspec URL (s3://…)
    result_backend_url: str | None = None  # Celery's, for the chord; default: derived from the broker

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

    @property
    def artifact_root(self) -> str:
        """Where shard statistics and feature slices go: ``ADVISOR_ARTIFACT_DIR`` or ``$DATA_DIR/artifacts``."""
        return self.artifact_dir or str(self.data_path / "artifacts")

    @property
    def result_backend(self) -> str:
        """Celery's result backend, which a chord needs to count its finished shards: the database
        backend on SQLite when embedded, else the Redis broker itself."""
        if self.result_backend_url:
            return self.result_backend_url
        if self.embedded or self.broker.startswith("sqla+"):
            return f"db+sqlite:///{self.data_path / 'results.sqlite'}"
        return self.broker

    def ensure_dirs(self) -> None:
        for p in (self.data_path, self.cache_dir, self.datasets_dir, self.checkpoints_dir):
            p.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    return Settings()
