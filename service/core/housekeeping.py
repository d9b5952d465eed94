"""A clean store (issue 23): retention of finished jobs, the feature cache's size cap, orphans.

* ``ADVISOR_RETENTION_DAYS`` (0: keep forever): finished jobs older than that are deleted with their
  rows and files, as ``DELETE /v1/jobs/{id}`` would.
* ``ADVISOR_FEATURE_CACHE_MAX_BYTES`` (0: no cap): the feature cache (``<store>/features`` of a remote
  store, and every host's local copy in ``$DATA_DIR/cache/features``) is trimmed to the cap, least
  recently used first (a local hit touches its ``meta.json``; in a remote store the last write counts).
* Orphans: ``<store>/jobs/<id>`` and local artifact directories of jobs the database no longer has (a
  delete whose file removal failed, a crash between the two).
* Stale uploads: ``<store>/uploads/<owner>/.incoming-*``, the temporary file an upload streams into, not
  written for ``ADVISOR_UPLOAD_INCOMING_MAX_AGE`` seconds (3600): an API process died mid-upload.

:func:`gc` runs them all (``advisor store gc``; the maintenance sweep runs it every
``ADVISOR_STORE_GC_INTERVAL`` seconds); :func:`usage` reports what the store holds (``advisor store du``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import shutil
import threading
import time
from typing import Any

import sqlalchemy as sa
from fsspec.core import url_to_fs

from service.core import lifecycle
from service.core.config import Settings
from service.core.db import session_scope
from service.core.models import Job, utcnow
from service.core.status import FINISHED
from service.core.store import ShardStore
from service.core.uploads import INCOMING_PREFIX

log = logging.getLogger("service.core.housekeeping")

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_LAST_GC = {"at": 0.0}
_GC_LOCK = threading.Lock()


def _mtime(info: dict[str, Any]) -> float:
    for k in ("mtime", "LastModified", "last_modified", "created"):
        v = info.get(k)
        if isinstance(v, dt.datetime):
            return v.timestamp()
        if isinstance(v, (int, float)):
            return float(v)
    return 0.0


def _entries(fs: Any, root: str) -> dict[str, tuple[int, float]]:
    """Each top-level entry under `root`: (bytes, last modification of any of its files)."""
    out: dict[str, tuple[int, float]] = {}
    if not fs.exists(root):
        return out
    for path, info in fs.find(root, detail=True).items():
        rel = str(path)[len(root):].lstrip("/")
        top = rel.split("/", 1)[0]
        size, last = out.get(top, (0, 0.0))
        out[top] = (size + int(info.get("size") or 0), max(last, _mtime(info)))
    return out


def usage(settings: Settings) -> dict[str, dict[str, int]]:
    """Bytes and entries per area of the store and of this host's local caches."""
    store = ShardStore(settings.store_root)
    areas: dict[str, tuple[Any, str]] = {
        "store/jobs": (store.fs, f"{store.root}/jobs"),
        "store/uploads": (store.fs, f"{store.root}/uploads"),
    }
    if settings.remote_feature_cache:
        areas["store/features"] = (store.fs, f"{store.root}/features")
    local, _ = url_to_fs("file://")
    areas["local/features"] = (local, str(settings.cache_dir))
    areas["local/stats"] = (local, str(settings.stats_cache_dir))
    areas["local/uploads"] = (local, str(settings.uploads_cache_dir))
    if not settings.store_is_remote:
        areas["store/stats"] = (local, str(settings.artifact_path))
    out = {}
    for name, (fs, root) in areas.items():
        entries = _entries(fs, root)
        if name == "store/stats":
            entries = {k: v for k, v in entries.items() if _UUID.match(k)}
        out[name] = {"bytes": sum(s for s, _ in entries.values()), "entries": len(entries)}
    return out


def evict_features(fs: Any, root: str, max_bytes: int) -> list[str]:
    """Remove feature stores under `root`, least recently used first, until they hold ≤ `max_bytes`;
    returns the removed keys. A store being written (a hidden temporary directory) is left alone."""
    entries = {k: v for k, v in _entries(fs, root).items() if not k.startswith(".")}
    total = sum(s for s, _ in entries.values())
    removed = []
    for key, (size, _) in sorted(entries.items(), key=lambda kv: kv[1][1]):
        if total <= max_bytes:
            break
        with contextlib.suppress(FileNotFoundError):
            fs.rm(f"{root}/{key}", recursive=True)
        total -= size
        removed.append(key)
    return removed


def evict_local_features(settings: Settings) -> list[str]:
    """This host's local feature cache, trimmed to the cap (nothing without one)."""
    if not settings.feature_cache_max_bytes:
        return []
    local, _ = url_to_fs("file://")
    return evict_features(local, str(settings.cache_dir), settings.feature_cache_max_bytes)


def expire_jobs(settings: Settings, now: dt.datetime | None = None) -> int:
    """Delete finished jobs older than the retention (rows and files); how many."""
    if not settings.retention_days:
        return 0
    cutoff = (now or utcnow()) - dt.timedelta(days=settings.retention_days)
    with session_scope(settings.db_url) as s:
        rows = s.execute(sa.select(Job.id, Job.owner).where(
            Job.status.in_(list(FINISHED)), Job.finished_at.is_not(None), Job.finished_at < cutoff)).all()
    done = 0
    for job_id, owner in rows:
        try:
            with session_scope(settings.db_url) as s:
                lifecycle.delete(s, job_id, owner, settings)
            done += 1
        except Exception:  # noqa: BLE001 - deleted meanwhile, or requeued: the next round sees it
            log.warning("retention: could not delete job %s", job_id, exc_info=True)
    return done


def remove_orphans(settings: Settings) -> list[str]:
    """Files of jobs the database no longer has: ``<store>/jobs/<id>`` and ``<artifact_path>/<id>``."""
    store = ShardStore(settings.store_root)
    candidates: set[str] = set()
    jobs_root = f"{store.root}/jobs"
    if store.fs.exists(jobs_root):
        candidates |= {str(p).rstrip("/").rsplit("/", 1)[-1] for p in store.fs.ls(jobs_root, detail=False)}
    local_dirs = {p.name: p for p in settings.artifact_path.iterdir() if p.is_dir() and _UUID.match(p.name)} \
        if settings.artifact_path.is_dir() else {}
    candidates = {c for c in candidates | set(local_dirs) if _UUID.match(c)}
    with session_scope(settings.db_url) as s:
        known = set(s.scalars(sa.select(Job.id).where(Job.id.in_(sorted(candidates))))) if candidates else set()
    orphans = sorted(candidates - known)
    for job_id in orphans:
        store.drop_job(job_id)
        if job_id in local_dirs:
            shutil.rmtree(local_dirs[job_id], ignore_errors=True)
    if settings.stats_cache_dir.is_dir():
        cached = {p.name for p in settings.stats_cache_dir.iterdir() if p.is_dir() and _UUID.match(p.name)}
        with session_scope(settings.db_url) as s:
            known = set(s.scalars(sa.select(Job.id).where(Job.id.in_(sorted(cached))))) if cached else set()
        for job_id in sorted(cached - known):
            shutil.rmtree(settings.stats_cache_dir / job_id, ignore_errors=True)
            orphans.append(job_id)
    return orphans


def remove_stale_incoming(settings: Settings, now: float | None = None) -> list[str]:
    """Uploads' temporary files (``uploads/<owner>/.incoming-*``) last written more than
    ``upload_incoming_max_age`` seconds ago; the removed keys. One being written is newer (each chunk
    written touches a local file; a remote store shows the file only once it is closed), and one whose
    store gives no time is left alone."""
    store = ShardStore(settings.store_root)
    root = f"{store.root}/uploads"
    if not store.fs.exists(root):
        return []
    cutoff = (time.time() if now is None else now) - settings.upload_incoming_max_age
    removed = []
    for path, info in store.fs.find(root, detail=True).items():
        if not str(path).rsplit("/", 1)[-1].startswith(INCOMING_PREFIX):
            continue
        written = _mtime(info)
        if not 0 < written < cutoff:
            continue
        try:
            store.fs.rm(path)
        except FileNotFoundError:  # finished (moved into place) or removed meanwhile
            continue
        removed.append(str(path))
    if removed:
        log.info("store gc: removed %d upload(s) left unfinished: %s", len(removed), removed)
    return removed


def gc(settings: Settings) -> dict[str, int]:
    """Retention, the feature cache's cap (the store's and this host's copy), orphans, uploads left
    unfinished; what each removed."""
    with _GC_LOCK:
        expired = expire_jobs(settings)
        evicted = 0
        if settings.feature_cache_max_bytes:
            evicted += len(evict_local_features(settings))
            if settings.remote_feature_cache:
                fs, root = url_to_fs(settings.remote_feature_cache)
                evicted += len(evict_features(fs, root.rstrip("/"), settings.feature_cache_max_bytes))
        orphans = len(remove_orphans(settings))
        stale_uploads = len(remove_stale_incoming(settings))
        _LAST_GC["at"] = time.monotonic()
    out = {"expired_jobs": expired, "evicted_features": evicted, "orphans": orphans, "stale_uploads": stale_uploads}
    if any(out.values()):
        log.info("store gc: %s", out)
    return out


def maybe_gc(settings: Settings) -> dict[str, int] | None:
    """:func:`gc` when ``store_gc_interval`` seconds have passed since the last one in this process."""
    if settings.store_gc_interval <= 0 or time.monotonic() - _LAST_GC["at"] < settings.store_gc_interval:
        return None
    _LAST_GC["at"] = time.monotonic()
    try:
        return gc(settings)
    except Exception:  # noqa: BLE001 - an unreachable store must not stop the maintenance sweep
        log.warning("store gc failed", exc_info=True)
        return None
