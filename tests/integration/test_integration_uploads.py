"""Issue 19's upload in production mode: Postgres, Redis and a real Celery worker process. A .npz of
float32 vectors goes up through `POST /v1/datasets` (listed and paginated on Postgres), a job names it as
`upload:<id>`, the worker process resolves it to the store's file and hands the engine
`embeddings:<path>`; the job succeeds with the upload's width and the report names the upload as
submitted. Deleting the upload removes the store's file."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.service.test_service_uploads import D_EMB, npz_bytes, upload_job

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
