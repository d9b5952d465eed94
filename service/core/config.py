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
``ADVISOR_QUEUE``               Base name of the job queues (default ``analysis``): jobs go to
                                ``<name>.cpu`` or ``<name>.gpu`` by their ``device``.
``ADVISOR_GPU_WORKERS``         GPU workers exist: a ``device: auto`` job goes to the gpu queue
                                (default false: to the cpu queue).
``ADVISOR_API_KEYS``            Comma-separated API keys, plain or ``sha256:<hex>``. Empty: no
                                auth. When set, every ``/v1`` call needs ``X-API-Key`` or
                                ``Authorization: Bearer``, and a key sees only its own jobs.
``ADVISOR_DEVICE``              ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``...
``ADVISOR_ALLOW_DOWNLOAD``      Let the engine download hub weights/datasets (default false).
``ADVISOR_TASK_SOFT_TIME_LIMIT`` Seconds before a job is stopped and failed (default 21600).
``ADVISOR_TASK_TIME_LIMIT``     Hard kill after this many seconds (default soft + 300).
``ADVISOR_REQUEUE_AFTER``       A queued job not picked up for this long is enqueued again
                                (lost message); backs off x2 per retry (default 120).
``ADVISOR_REQUEUE_MAX_AFTER``   ... but never waits longer than this between resends (300).
``ADVISOR_DB_RETRY_DELAY``      A worker that gets a message while the database is unreachable sends
                                it again to itself after this many seconds (5), not acking it away.
``ADVISOR_BROKER_TIMEOUT``      Socket timeout of the broker's Redis calls (2 s); the rate limiter's:
                                ``ADVISOR_RATE_LIMIT_TIMEOUT`` (0.25 s), after which it counts in memory
                                for ``ADVISOR_RATE_LIMIT_PAUSE`` (5 s); /readyz waits for the broker at
                                most ``ADVISOR_READY_TIMEOUT`` (1 s).
``ADVISOR_MAX_IN_FLIGHT``       ``/v1`` requests one API process serves at once (1000), and writes among
                                them (``ADVISOR_MAX_IN_FLIGHT_WRITES``, 64); past either: 503 +
                                ``Retry-After`` at once (``service/api/shedding.py``).
``ADVISOR_STALE_AFTER``         A running job without heartbeat for this long is requeued
                                (dead worker) (default 20); at once when its worker process is
                                known dead (same host, pid gone).
``ADVISOR_HEARTBEAT``           Seconds between the worker's progress/heartbeat writes (2).
``ADVISOR_HOST``, ``_PORT``      Where ``advisor serve`` listens (127.0.0.1, 8000); ``--host``/``--port``
                                override them. ``ADVISOR_WEB_WORKERS``: its uvicorn processes (1).
``ADVISOR_API_THREADS``         Threads per API process for sync routes; the DB pool holds this many
                                connections plus 4 (default 32). Postgres needs ``max_connections``
                                above ``--workers`` x (threads + 4) + workers.
``ADVISOR_DB_POOL_TIMEOUT``     Seconds a request waits for a connection before 503 (default 2).
``ADVISOR_RESULT_CACHE_TTL``    Seconds finished results/recommendations/plots stay cached (60).
``ADVISOR_LIST_CACHE_TTL``      Seconds a page of finished jobs stays cached (2).
``ADVISOR_CACHE_MAX_BYTES``     In-process cache size per API process (64 MiB).
``ADVISOR_WORKER_LOCK_WAIT``    Seconds an embedded worker waits for the data dir's lock (30).
``ADVISOR_EMBEDDED_WORKER``     Force ``advisor serve`` to start (true) or not start (false) a
                                worker subprocess; default: only when ``BROKER_URL`` is unset.
``ADVISOR_WEBHOOK_SECRET``      Master secret from which each API key's webhook signing secret is
                                derived (set it when several API processes run); default: one
                                generated in ``DATA_DIR/webhook_secret``.
``ADVISOR_WEBHOOK_ALLOW``       Callback addresses allowed although not public: ``loopback``,
                                ``private``, ``link-local`` and/or CIDRs (default: none).
``ADVISOR_WEBHOOK_MAX_ATTEMPTS`` Delivery attempts per event (6); ``ADVISOR_WEBHOOK_BACKOFF``
                                seconds before the 2nd, doubling (10); ``ADVISOR_WEBHOOK_TIMEOUT`` (10).
``ADVISOR_PUBLIC_URL``          Base URL that makes the links in webhook events absolute.
``ADVISOR_MAX_BODY_BYTES``      Largest request body accepted; larger gets 413 (default 65536).
``ADVISOR_MAX_HEADER_BYTES``    Largest request line + headers (default 65536) and most header
                                fields (``ADVISOR_MAX_HEADER_COUNT``, 100); past either: 431.
``ADVISOR_MAX_ACTIVE_JOBS``     Queued + running jobs one key may have; more gets 429 (100).
``ADVISOR_RATE_LIMIT``          Requests per key (per client address without keys) on ``/v1``, in
                                the ``limits`` notation, default ``50/second;1500/minute``; over it:
                                429 + ``Retry-After``. Counted in Redis when ``BROKER_URL`` is
                                ``redis://``, in memory otherwise. Empty: no rate limit.
``ADVISOR_RETRY_AFTER``         Seconds in ``Retry-After`` of a 503 (database down) or a 429 for
                                too many active jobs (default 5).
``ADVISOR_DATA_ROOTS``          Directories (``:``- or ``,``-separated) dataset and weights paths
                                of a job must resolve into; default: ``DATA_DIR``.
``ADVISOR_SHOW_DATA_ROOTS``     List the data roots in a refused path's answer (default true; false:
                                name only ADVISOR_DATA_ROOTS).
``ADVISOR_JOB_THREADS``         torch and BLAS threads of one job (default 0: the process's share,
                                available cores / ``ADVISOR_WORKER_CONCURRENCY``, which
                                ``advisor worker -c`` sets).
``ADVISOR_METRICS_PUBLIC``      Serve ``/metrics`` and the details of ``/readyz`` without a key
                                (default false: they need a key when keys are configured).
``ADVISOR_STORE_URL``           The store every host shares (issue 23): feature cache, shard files,
                                statistics, uploads; a directory or an fsspec URL (``s3://bucket/p``,
                                credentials from the AWS environment/config chain). Local copies in
                                ``$DATA_DIR/cache`` are caches of it, safe to delete.
``ADVISOR_RETENTION_DAYS``      Finished jobs older than this are deleted, files included (0: never).
``ADVISOR_FEATURE_CACHE_MAX_BYTES`` The feature cache's cap (store and each host's copy); least recently
                                used first past it (0: no cap).
``ADVISOR_STORE_GC_INTERVAL``   Seconds between store collections by the maintenance sweep (3600).
``ADVISOR_ARTIFACT_DIR``        Deprecated alias of ``ADVISOR_STORE_URL`` (used when it is unset).
``ADVISOR_SHARD_SIZE``          A job with more images (train + val + test) runs its extraction as
                                a Celery chord of shards of this many rows (default 1,000,000).
``ADVISOR_SHARD_RETRIES``       Retries of a failed shard, alone, before its job fails (3).
``ADVISOR_RESULT_BACKEND_URL``  Celery result backend for the chord (default: ``db+sqlite`` under
                                ``DATA_DIR`` when embedded, else the Redis broker).
``ADVISOR_MAX_UPLOAD_BYTES``    Largest file ``POST /v1/datasets`` accepts (default 2 GiB); past it:
                                413, counted while the file streams in, nothing of it kept.
``ADVISOR_UPLOAD_QUOTA_FILES``  Uploaded files one key may hold (default 100); more: 429.
``ADVISOR_UPLOAD_QUOTA_BYTES``  Bytes of uploaded files one key may hold (default 20 GiB); more: 429.
                                Uploads live in the artifact store under ``uploads/`` (workers
                                with a remote store fetch them into ``$DATA_DIR/cache/uploads``).
``ADVISOR_OTEL_ENDPOINT``       OTLP/HTTP collector for traces, e.g. ``http://collector:4318`` (needs
                                the ``otel`` extra; the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` works
                                too). Unset: no tracing. ``ADVISOR_LOG_FORMAT``: ``text`` or ``json``.
==============================  =============================================================

Fixed limits (in the request schema, so the OpenAPI document declares them) are in
``redundancy.config`` (string lengths, list lengths, integer ranges) and ``service.api.limits``
(values of a repeated query parameter).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from redundancy.threads import thread_share


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
    gpu_workers: bool = False
    """``ADVISOR_GPU_WORKERS``: gpu workers exist, so a ``device: auto`` job goes to the gpu queue (else cpu)."""
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

    # ---- the HTTP server (`advisor serve`; its --host, --port and --workers override these) --------
    host: str = "127.0.0.1"
    """Address `advisor serve` listens on (``ADVISOR_HOST``); a non-loopback one needs API keys."""
    port: int = Field(8000, ge=0, le=65535)
    """Port `advisor serve` listens on (``ADVISOR_PORT``)."""
    web_workers: int = Field(1, ge=1)
    """uvicorn processes of `advisor serve` (``ADVISOR_WEB_WORKERS``); more than one needs Postgres."""

    # ---- staying up under load: threads, pool and caches of one API process -------------------
    api_threads: int = 32
    """Threads serving sync routes in one API process (AnyIO's limiter); the DB pool is sized to it."""
    db_pool_timeout: float = 2.0
    """Seconds a request waits for a database connection before it is answered 503 + Retry-After."""
    result_cache_ttl: float = 60.0
    """Seconds a finished job's result, recommendation or plot stays in the API's in-process cache (a
    delete in another API process is seen after at most this long)."""
    list_cache_ttl: float = 2.0
    """Seconds a page of finished jobs (``?status=succeeded|failed|cancelled``) stays cached."""
    cache_max_bytes: int = 64 * 2**20
    """Bytes of cached bodies per API process (least recently used evicted first)."""
    worker_lock_wait: float = 30.0
    """Seconds an embedded worker waits for the data directory's worker lock (a dying one holds it)."""

    # ---- webhooks (signed events when a job finishes) and who may read the metrics --------------
    webhook_secret: str = ""
    """Master secret of the per-API-key webhook secrets; empty: generated once in DATA_DIR/webhook_secret."""
    webhook_allow: str = ""
    """Non-public callback addresses to allow: `loopback`, `private`, `link-local` and/or CIDRs (comma-separated)."""
    webhook_max_attempts: int = Field(6, ge=1, le=50)
    webhook_backoff: float = Field(10.0, ge=0.0)
    """Seconds before the second attempt; doubling after each failed attempt (capped at one hour)."""
    webhook_timeout: float = Field(10.0, gt=0.0)
    webhook_poll_interval: float = 1.0
    """How often the API process looks for due deliveries (0: never; tests call it themselves)."""
    public_url: str = ""
    """This server's public base URL (e.g. https://advisor.example.com): webhook links become absolute."""
    mlflow_allow: str = ""
    """Non-public addresses a job's ``mlflow.tracking_uri`` (http/https) may reach, as ``webhook_allow``:
    `loopback`, `private`, `link-local` and/or CIDRs (comma-separated); a private MLflow server needs `private`."""
    # ---- limits: what one caller may send and hold, and where its paths may point --------------
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    max_active_jobs: int = Field(100, ge=1)
    max_layer_stats_bytes: int = Field(4 * 2**30, ge=1)
    """The float64 statistics of a job's layers, (Σd)²·8 bytes, must fit here: a layer sweep that does not is
    refused at submission (422 naming `layers`) and, as a backstop, by the worker (the engine's Runtime)."""
    rate_limit: str = "50/second;1500/minute"
    retry_after: int = Field(5, ge=1)
    """The ``Retry-After`` (seconds) of a 503 (database down or busy) and of a 429 for too many active jobs."""
    data_roots: str = ""
    show_data_roots: bool = True
    """Whether a refused path's answer lists the allowed roots (off: it names only ADVISOR_DATA_ROOTS,
    for a server whose callers should not learn its directory layout)."""
    metrics_public: bool = False

    @property
    def allowed_roots(self) -> tuple[Path, ...]:
        """Where a job's dataset and weights paths may point (resolved); default: the data directory."""
        raw = [r.strip() for r in self.data_roots.replace(",", os.pathsep).split(os.pathsep)]
        roots = [Path(r).expanduser().resolve() for r in raw if r]
        return tuple(roots) or (self.data_path,)

    # ---- threads: a job's torch/BLAS threads are the worker process's share ---------------
    worker_concurrency: int = Field(1, ge=1)
    """Jobs one worker runs at once (``advisor worker -c`` sets it for its processes)."""
    job_threads: int = Field(0, ge=0)
    """torch and BLAS threads of one job; 0: the process's share, available cores / worker_concurrency."""

    @property
    def threads_per_job(self) -> int:
        return self.job_threads or thread_share(self.worker_concurrency)

    # ---- sharding: a large extraction split into shards any worker runs, reduced at the end ------
    shard_size: int = Field(1_000_000, ge=1)  # rows (train + val + test images) per shard
    shard_retries: int = Field(3, ge=0)  # retries of a failed shard, alone, before the job fails
    artifact_dir: str | None = None
    """``ADVISOR_ARTIFACT_DIR`` as given: a directory or an fsspec URL (s3://…); read it through
    :attr:`artifact_path` (the local artifact store) and :attr:`shard_store_url` (the shard store)."""
    result_backend_url: str | None = None  # Celery's, for the chord; default: derived from the broker

    # ---- uploaded datasets (issue 19) ---------------------------------------------------------
    max_upload_bytes: int = Field(2 * 2**30, ge=1024)
    """Largest file one ``POST /v1/datasets`` may carry; past it: 413 (counted while it streams in)."""
    upload_quota_files: int = Field(100, ge=1)
    """Uploaded files one key may hold at once; one more: 429."""
    upload_quota_bytes: int = Field(20 * 2**30, ge=1024)
    """Bytes of uploaded files one key may hold at once; past it: 429 (counted while the file streams in)."""
    upload_incoming_max_age: float = Field(3600.0, gt=0)
    """``ADVISOR_UPLOAD_INCOMING_MAX_AGE``: seconds after its last write that an upload's temporary file
    (``uploads/<owner>/.incoming-*``, left by an API process that died mid-upload) is removed by the store's
    collection."""

    # ---- issue 23: traces and logs (service.core.tracing, service.core.logs) -------------------------
    otel_endpoint: str | None = None
    """``ADVISOR_OTEL_ENDPOINT``: OTLP/HTTP base URL traces are exported to (the ``otel`` extra); unset, the
    standard ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` is used if set, else nothing is traced."""
    log_format: Literal["text", "json"] = "text"
    """``ADVISOR_LOG_FORMAT``: ``json`` writes one JSON object a line with the job id and trace id."""

    # ---- issue 23: one store for every host (feature cache, shards, statistics, uploads, heads) ----
    store_url: str | None = None
    """``ADVISOR_STORE_URL``: the store every host shares, a directory or an fsspec URL (``s3://bucket/prefix``;
    s3fs takes its credentials from the usual AWS environment and config chain, never from here, and
    they are never logged). ``ADVISOR_ARTIFACT_DIR`` is its deprecated alias; default ``$DATA_DIR/artifacts``."""

    retention_days: float = Field(0, ge=0)
    """``ADVISOR_RETENTION_DAYS``: finished jobs older than this are deleted with their files (0: kept forever)."""
    feature_cache_max_bytes: int = Field(0, ge=0)
    """``ADVISOR_FEATURE_CACHE_MAX_BYTES``: the feature cache's cap, in the store and on each host; least
    recently used stores are evicted past it (0: no cap)."""
    store_gc_interval: float = Field(3600.0, ge=0)
    """``ADVISOR_STORE_GC_INTERVAL``: seconds between two store collections of the maintenance sweep (0: never;
    ``advisor store gc`` runs one at once)."""

    @property
    def store_root(self) -> str:
        """The store: ``ADVISOR_STORE_URL``, else the deprecated ``ADVISOR_ARTIFACT_DIR``, else
        ``$DATA_DIR/artifacts``."""
        return self.store_url or self.artifact_dir or str(self.data_path / "artifacts")

    @property
    def store_is_remote(self) -> bool:
        """Whether the store is an fsspec URL other than a local directory (then every local file is a cache)."""
        root = self.store_root
        return "://" in root and not root.startswith("file://")

    @property
    def remote_feature_cache(self) -> str | None:
        """The feature cache in a remote store (``<store>/features``); None with a local store."""
        return f"{self.store_root.rstrip('/')}/features" if self.store_is_remote else None

    @property
    def stats_cache_dir(self) -> Path:
        """Local copies of statistics files from a remote store (by sha256), and the heads built from them."""
        return self.data_path / "cache" / "stats"
    # ---- the operator's probe (issue 23): bounded heads, timeouts on Redis, nothing silent ----------
    max_header_bytes: int = Field(64 * 1024, ge=1024)
    """Largest request line + headers `advisor serve` reads; past it: 431 and the connection closed."""
    max_header_count: int = Field(100, ge=8)
    """Most header fields in one request; more: 431."""
    requeue_max_after: float = Field(300.0, gt=0)
    """The longest a queued job whose message is gone waits for its next resend (the backoff of
    ``ADVISOR_REQUEUE_AFTER`` stops doubling here)."""
    db_retry_delay: float = Field(5.0, ge=0)
    """Seconds before a worker tries again a message it received while the database was unreachable
    (instead of acking it and leaving its job queued); up to ``DB_RETRIES`` times."""
    broker_timeout: float = Field(2.0, gt=0)
    """Socket (connect and read) timeout of every Redis call: the broker's publishes and probes."""
    rate_limit_timeout: float = Field(0.25, gt=0)
    """Socket timeout of the rate limiter's Redis; past it the request goes on, counted in memory."""
    rate_limit_pause: float = Field(5.0, ge=0)
    """Seconds the rate limiter counts in memory (not asking Redis) after Redis failed to answer."""
    rate_limit_delay: float = Field(1.0, ge=0, le=30)
    """Seconds a 429 waits before it is sent (never past its ``Retry-After``; 0: at once): a client that asks
    again at once is slowed to one request per delay per connection, so a flood of refusals cannot fill the
    event loop that serves the other keys. Past ``MAX_DELAYED`` refusals waiting, they are sent at once."""
    ready_timeout: float = Field(1.0, gt=0)
    """Seconds /readyz waits for the broker before it answers 503."""
    max_in_flight: int = Field(1000, ge=1)
    """``/v1`` requests one API process serves at once; past it: 503 + Retry-After at once."""
    max_in_flight_writes: int = Field(64, ge=1)
    """``/v1`` writes (POST, PUT, PATCH, DELETE) one API process serves at once; past it: 503 + Retry-After."""
    max_in_flight_per_key: int = Field(8, ge=1)
    """``/v1`` requests of one key (one address without keys) one API process serves at once; more wait their
    turn, in order, behind that key's own: a burst within one key's rate cannot hold every thread."""
    max_turn_wait: float = Field(5.0, gt=0)
    """Seconds a request may wait for its key's turn (``max_in_flight_per_key``); past it, or with
    ``max_in_flight`` of that key's requests already waiting, 503 + Retry-After."""

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
    def hf_hub_offline(self) -> str:
        """``HF_HUB_OFFLINE`` for the engine's processes when the environment does not set it: offline ("1")
        unless downloads are allowed."""
        return "0" if self.allow_download else "1"

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
    def uploads_cache_dir(self) -> Path:
        """Where a worker keeps local copies of uploaded datasets fetched from a remote store (by sha256)."""
        return self.data_path / "cache" / "uploads"

    @property
    def shard_store_url(self) -> str:
        """The shard store (:class:`service.core.store.ShardStore`: shard statistics and feature slices):
        ``ADVISOR_ARTIFACT_DIR`` (a directory or any fsspec URL) or ``$DATA_DIR/artifacts``."""
        return self.store_root

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

    # ---- the artifact store: each job's layer statistics and the heads built from them ---------
    @property
    def artifact_path(self) -> Path:
        """The artifact store (:mod:`service.core.artifacts`), a local directory: each job's layer statistics
        and built heads (the API and the workers must see it at the same path). A remote fsspec URL holds
        only the shard store; then the statistics stay in ``$DATA_DIR/artifacts``."""
        root = self.store_root.removeprefix("file://")
        if "://" in root:
            root = str(self.data_path / "artifacts")
        return Path(root).expanduser().resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()
