"""Issue 19's upload in production mode: Postgres, Redis and a real Celery worker process. A .npz of
float32 vectors goes up through `POST /v1/datasets` (listed and paginated on Postgres), a job names it as
`upload:<id>`, the worker process resolves it to the store's file and hands the engine
`embeddings:<path>`; the job succeeds with the upload's width and the report names the upload as
submitted. Deleting the upload removes the store's file."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from service.core import uploads
from service.core.config import Settings
from service.core.db import get_sessionmaker
from service.core.errors import UploadQuotaExceeded
from service.core.models import DatasetUpload
from service.core.store import ShardStore
from tests.service.test_service_uploads import D_EMB, npz_bytes, upload_job
from tests.service.upload_race import Rendezvous, hook_usage, race

pytestmark = pytest.mark.integration


def test_an_upload_runs_on_the_production_stack(client: Any, wait: Any, settings: Any) -> None:
    data = [npz_bytes(seed=s, n_train=90, n_test=45) for s in range(3)]
    ids = []
    for blob in data:
        r = client.post("/v1/datasets", files={"file": ("vectors.npz", blob, "application/octet-stream")})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    assert ids == [hashlib.sha256(b).hexdigest() for b in data]
    first = client.get("/v1/datasets", params={"page_size": 2}).json()
    rest = client.get("/v1/datasets", params={"page_size": 2, "page_token": first["next_page_token"]}).json()
    assert [d["id"] for d in first["items"] + rest["items"]][:3] == ids[::-1]

    body = upload_job(ids[0]) | {"bootstrap": 0, "baselines": []}
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    job = wait(client, job_id, {"succeeded", "failed"}, timeout=300)
    store_file = settings.artifact_path / "uploads" / "anonymous" / f"{ids[0]}.npz"
    assert job["status"] == "succeeded", job
    report = client.get(f"/v1/jobs/{job_id}/result").json()
    assert report["dataset"]["spec"] == f"upload:{ids[0]}" and report["model"]["d"] == D_EMB
    assert store_file.is_file() and client.delete(f"/v1/datasets/{ids[0]}").status_code == 204
    assert not store_file.exists()


@pytest.mark.parametrize("quota", ["files", "bytes"])
def test_two_uploads_racing_for_the_last_place_of_the_quota_one_wins(
    core_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quota: str
) -> None:
    """The quota's check and the upload's row in one step, on SQLite and on Postgres: two uploads of one key
    at quota - 1 (or with room for one more file, not two) both pass the check before they stream, and
    exactly one is kept; the other is refused (UploadQuotaExceeded, the API's 429)."""
    first, a, b = npz_bytes(seed=0), npz_bytes(seed=1), npz_bytes(seed=2)
    limits = {"upload_quota_files": 2} if quota == "files" else {"upload_quota_bytes": 3 * len(first) - 100}
    settings = Settings(data_dir=tmp_path / "data", database_url=core_db_url, broker_url=None, **limits)
    store = ShardStore(settings.shard_store_url)
    make_session = get_sessionmaker(settings.db_url)

    def put(name: str, data: bytes) -> tuple[str, bool]:
        with make_session() as s:
            incoming = uploads.begin(s, settings, store, "k1", name)
        incoming.write(data)
        with make_session() as s:
            row, created = uploads.finish(s, settings, incoming)
            return row.id, created

    assert put("first.npz", first)[1]
    rendezvous = Rendezvous()
    hook_usage(monkeypatch, rendezvous)
    out = race(lambda: put("a.npz", a), lambda: put("b.npz", b))
    refused = [r for r in out if isinstance(r, UploadQuotaExceeded)]
    kept = [r for r in out if isinstance(r, tuple)]
    assert len(refused) == 1 and len(kept) == 1 and kept[0][1], out
    assert refused[0].what == quota
    with make_session() as s:
        ids = set(s.scalars(sa.select(DatasetUpload.id).where(DatasetUpload.owner == "k1")))
    assert ids == {hashlib.sha256(first).hexdigest(), kept[0][0]}
    names = sorted(str(p).rsplit("/", 1)[-1] for p in store.fs.find(store.upload_key("k1", "")))
    assert names == sorted(f"{i}.npz" for i in ids)  # the refused upload left no file, temporary or not
