"""Issue 23, a clean store: deleting a job deletes its files (a local store and a remote one, here fsspec's
in-memory filesystem, which the code reads as it reads s3://); retention expires old finished jobs; the
feature cache's cap evicts the least recently used stores; orphans go; `advisor store du|gc` report."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from service.core import housekeeping
from service.core.config import Settings
from service.core.db import session_scope
from service.core.models import Job
from service.main import create_app
from tests.service.conftest import FakeEngine, Harness, small_job


def _harness(settings: Settings) -> Any:
    h = Harness(settings, None, FakeEngine())  # type: ignore[arg-type]
    return h, TestClient(create_app(settings, queue=h, maintenance=False))


def _files(fs: Any, root: str) -> list[str]:
    return sorted(fs.find(root)) if fs.exists(root) else []


@pytest.mark.parametrize("remote", [False, True])
def test_n_create_delete_cycles_leave_nothing_of_the_deleted_jobs(
    tmp_path: Path, settings_factory: Callable[..., Settings], remote: bool
) -> None:
    store = f"memory://store-{uuid.uuid4().hex[:8]}" if remote else None
    settings = settings_factory(tmp_path, store_url=store)
    assert settings.store_is_remote is remote
    fs, root = fsspec.core.url_to_fs(settings.store_root)
    h, client = _harness(settings)
    with client:
        h.client = client
        kept = h.submit(small_job())["id"]  # one job stays: its files must survive the others' deletion
        h.run_all()
        for _ in range(5):
            job_id = h.submit(small_job(seeds=3))["id"]
            h.run_all()
            assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
            assert client.get(f"/v1/jobs/{job_id}/artifact").status_code == 200  # builds a head
            during = _files(fs, root)
            assert any(job_id in f for f in during) or (settings.artifact_path / job_id).is_dir()
            assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
            leftovers = [f for f in _files(fs, root) if job_id in f]
            assert leftovers == [] and not (settings.artifact_path / job_id).exists()
            assert not (settings.stats_cache_dir / job_id).exists()
        assert client.get(f"/v1/jobs/{kept}/artifact").status_code == 200
    names = _files(fs, root)
    if remote:
        assert names and all(f"/jobs/{kept}/" in f for f in names)  # the kept job's statistics only
        assert not (settings.artifact_path / kept).exists()  # nothing a job needs on the local disk
    else:
        assert {p.name for p in settings.artifact_path.iterdir()} == {kept}


def test_retention_expires_old_finished_jobs_with_their_files(
    tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(tmp_path, retention_days=7)
    h, client = _harness(settings)
    with client:
        h.client = client
        old, new = h.submit(small_job())["id"], h.submit(small_job(seeds=3))["id"]
        h.run_all()
        with session_scope(settings.db_url) as s:
            s.execute(sa.update(Job).where(Job.id == old).values(
                finished_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=8)))
            s.commit()
        assert (settings.artifact_path / old).is_dir()
        out = housekeeping.gc(settings)
        assert out["expired_jobs"] == 1
        assert client.get(f"/v1/jobs/{old}").status_code == 404
        assert not (settings.artifact_path / old).exists()
        assert client.get(f"/v1/jobs/{new}").json()["status"] == "succeeded"
        assert (settings.artifact_path / new).is_dir()
        settings.retention_days = 0  # kept forever
        assert housekeeping.gc(settings)["expired_jobs"] == 0


def test_the_feature_cache_cap_evicts_the_least_recently_used(tmp_path: Path) -> None:
    local = fsspec.filesystem("file")
    root = tmp_path / "features"
    now = time.time()
    for i, key in enumerate(["a" * 64, "b" * 64, "c" * 64]):
        (root / key).mkdir(parents=True)
        (root / key / "x.npy").write_bytes(b"0" * 1000)
        (root / key / "meta.json").write_text("{}")
        os.utime(root / key / "x.npy", (now - 300 + i, now - 300 + i))
        os.utime(root / key / "meta.json", (now - 300 + i, now - 300 + i))
    os.utime(root / ("a" * 64) / "meta.json")  # "a" was used last (a hit touches meta.json)
    (root / ".tmp-being-written").mkdir()
    (root / ".tmp-being-written" / "x.npy").write_bytes(b"0" * 5000)
    removed = housekeeping.evict_features(local, str(root), 2100)
    assert removed == ["b" * 64]
    assert sorted(p.name for p in root.iterdir()) == [".tmp-being-written", "a" * 64, "c" * 64]
    assert housekeeping.evict_features(local, str(root), 10_000) == []
    assert housekeeping.evict_features(local, str(root), 0) == ["c" * 64, "a" * 64]


def test_gc_removes_orphans_and_du_reports(
    tmp_path: Path, settings_factory: Callable[..., Settings], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = f"memory://store-{uuid.uuid4().hex[:8]}"
    settings = settings_factory(tmp_path, store_url=store)
    fs, root = fsspec.core.url_to_fs(store)
    orphan = str(uuid.uuid4())
    fs.pipe_file(f"{root}/jobs/{orphan}/stats-1.npz", b"x" * 10)
    fs.pipe_file(f"{root}/uploads/anon/abc.npz", b"y" * 7)
    (settings.stats_cache_dir / orphan / "heads").mkdir(parents=True)
    usage = housekeeping.usage(settings)
    assert usage["store/jobs"] == {"bytes": 10, "entries": 1}
    assert usage["store/uploads"] == {"bytes": 7, "entries": 1}
    assert housekeeping.gc(settings)["orphans"] == 2  # the store's directory and the local cache's
    assert _files(fs, f"{root}/jobs") == [] and not (settings.stats_cache_dir / orphan).exists()

    from service import cli

    monkeypatch.setenv("ADVISOR_STORE_URL", store)
    monkeypatch.setenv("DATABASE_URL", settings.db_url)
    monkeypatch.setenv("DATA_DIR", str(settings.data_path))
    cli.get_settings.cache_clear()
    try:
        assert cli.main(["store", "du"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["store"] == store and out["store/uploads"]["bytes"] == 7
        assert cli.main(["store", "gc"]) == 0
        assert json.loads(capsys.readouterr().out) == {"expired_jobs": 0, "evicted_features": 0, "orphans": 0,
                                                      "stale_uploads": 0}
    finally:
        cli.get_settings.cache_clear()


@pytest.mark.parametrize("remote", [False, True])
def test_gc_removes_incoming_uploads_left_over_and_keeps_fresh_ones(
    tmp_path: Path, settings_factory: Callable[..., Settings], remote: bool
) -> None:
    """An upload streams into `uploads/<owner>/.incoming-<uuid>` before it is moved into place; an API process
    that dies mid-upload leaves that file. One collection removes those untouched for
    `upload_incoming_max_age` seconds, and leaves one still being written and every finished upload."""
    store = f"memory://store-{uuid.uuid4().hex[:8]}" if remote else None
    settings = settings_factory(tmp_path, store_url=store, upload_incoming_max_age=3600)
    fs, root = fsspec.core.url_to_fs(settings.store_root)
    old, fresh = f"{root}/uploads/anonymous/.incoming-{'a' * 32}", f"{root}/uploads/k1/.incoming-{'b' * 32}"
    done = f"{root}/uploads/anonymous/{'c' * 64}.npz"
    for key in (old, fresh, done):
        fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(key, b"PK\x03\x04" + b"x" * 10)
    two_hours_ago = time.time() - 7200
    for key in (old, done):
        if remote:
            fs.store[key].created = fs.store[key].modified = dt.datetime.fromtimestamp(two_hours_ago, dt.UTC)
        else:
            os.utime(key, (two_hours_ago, two_hours_ago))
    out = housekeeping.gc(settings)
    assert out["stale_uploads"] == 1
    assert not fs.exists(old) and fs.exists(fresh) and fs.exists(done)
    assert housekeeping.gc(settings)["stale_uploads"] == 0
