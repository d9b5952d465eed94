"""Issue 23: several machines sharing nothing but Postgres, Redis and an object store.

A `moto` S3 server on loopback is the store (``ADVISOR_STORE_URL=s3://…``, read through s3fs with the
credentials and endpoint of the usual AWS environment variables); the API (in process) and two real
Celery worker processes each have their own empty ``DATA_DIR``: nothing is shared on disk. A sharded
job runs its shards on both workers; an upload job and an artifact download succeed; a second job with
the same features, sent to the other worker, copies the features from the store instead of extracting
them again (its report says so and its extract stage is short). Deleting the jobs leaves nothing of
them in the store. Last, a worker killed mid-shard is replaced by the other: the same curve, no shard
lost or counted twice.
"""

from __future__ import annotations

import hashlib
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import wait_for
from tests.integration.processes import start_celery_worker, stop_process

pytestmark = pytest.mark.integration
moto_server = pytest.importorskip("moto.server", reason="the dev extra's moto[server] is not installed")
pytest.importorskip("s3fs", reason="the dev extra's s3fs is not installed")

SHARD_SIZE = 200  # the small job (400 rows) runs as 2 shards; the cache job (180 rows) in one piece
BUCKET = "advisor-multihost"
CACHE_JOB: dict[str, Any] = {
    "model": {"name": "resnet18", "weights": "random"},
    "dataset": {"spec": "digits", "max_train": 120, "max_test": 60},
    "image_size": 32, "fractions": [0.1, 0.5, 1.0], "seeds": 2, "probe": "ridge", "deltas": [0.05],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def hosts(stack_env: dict[str, str], migrated: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The store, two workers and the API, each with its own data directory. The workers share the job
    queue (and so the shards); each also has a queue of its own, which a second API client sends to."""
    from fastapi.testclient import TestClient

    from service.core.config import Settings
    from service.main import create_app

    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server.start()
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    mp = pytest.MonkeyPatch()
    for k, v in aws.items():
        mp.setenv(k, v)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir(BUCKET)
    store = f"s3://{BUCKET}/store"
    queue = f"advisor-multihost-{uuid.uuid4().hex[:8]}"
    logs = tmp_path_factory.mktemp("multihost-logs")
    procs, dirs = [], []
    for i in range(2):
        data = tmp_path_factory.mktemp(f"host{i}")
        dirs.append(data)
        env = {**stack_env, **aws, "ADVISOR_QUEUE": queue, "ADVISOR_STORE_URL": store, "DATA_DIR": str(data),
               "ADVISOR_SHARD_SIZE": str(SHARD_SIZE), "ADVISOR_STALE_AFTER": "15"}
        procs.append(start_celery_worker(env, f"{queue},{queue}-only{i}", logs / f"w{i}.log", f"host{i}-{queue}"))
    api_dir = tmp_path_factory.mktemp("api-host")

    def settings(q: str) -> Settings:
        return Settings(database_url=stack_env["DATABASE_URL"], broker_url=stack_env["BROKER_URL"],
                        data_dir=api_dir, queue=q, heartbeat=0.5, stale_after=15.0, maintenance_interval=0.5,
                        shard_size=SHARD_SIZE, store_url=store)

    try:
        with TestClient(create_app(settings(queue))) as api, \
                TestClient(create_app(settings(f"{queue}-only0"))) as to0, \
                TestClient(create_app(settings(f"{queue}-only1"))) as to1:
            yield {"api": api, "to": (to0, to1), "fs": fs, "store": f"{BUCKET}/store", "logs": logs,
                   "dirs": dirs, "api_dir": api_dir, "procs": procs}
    finally:
        for p in procs:
            stop_process(p)
        server.stop()
        mp.undo()


def _done(client: Any, job_id: str, logs: Path, timeout: float = 240) -> dict[str, Any]:
    job = wait_for(client, job_id, {"succeeded", "failed", "cancelled"}, timeout=timeout, worker_log=logs / "w0.log")
    assert job["status"] == "succeeded", (job, (logs / "w0.log").read_text()[-2500:],
                                          (logs / "w1.log").read_text()[-2500:])
    return job


def _store_files(fs: Any, root: str) -> list[str]:
    fs.invalidate_cache()
    return [p for p in fs.find(root)] if fs.exists(root) else []


def test_a_sharded_job_runs_on_two_hosts_sharing_only_the_store(hosts: dict[str, Any], small_job: dict) -> None:
    api, fs, logs = hosts["api"], hosts["fs"], hosts["logs"]
    t0 = time.monotonic()
    job_id = api.post("/v1/jobs", json=small_job).json()["id"]
    _done(api, job_id, logs)
    print(f"sharded job over the S3 store: {time.monotonic() - t0:.1f} s")
    for i in range(2):
        assert "advisor.run_shard" in (logs / f"w{i}.log").read_text(), f"worker {i} ran no shard"
    files = _store_files(fs, f"{hosts['store']}/jobs/{job_id}")
    assert [f.rsplit("/", 1)[-1] for f in files] == ["stats-1.npz"], files  # shards dropped after the reduce
    # the artifact: the API host reads the statistics from the store (its own disk never had them)
    r = api.get(f"/v1/jobs/{job_id}/artifact", params={"delta": 0.05})
    assert r.status_code == 200, r.text
    assert r.content[:8] and len(r.content) > 100
    assert not (hosts["api_dir"] / "artifacts" / job_id).exists()
    report = api.get(f"/v1/jobs/{job_id}/result").json()
    hosts["sharded_curve"] = {(p["kind"], p["k"], p["seed"]): (p["accuracy"], p.get("cka")) for p in report["curve"]}
    for d in hosts["dirs"]:
        assert not (d / "artifacts" / job_id).exists()  # nothing a job needs on a worker's disk
    assert api.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert _store_files(fs, f"{hosts['store']}/jobs/{job_id}") == []


def test_the_other_host_reuses_the_features_in_the_store(hosts: dict[str, Any]) -> None:
    (to0, to1), logs = hosts["to"], hosts["logs"]
    local = [d / "cache" / "features" for d in hosts["dirs"]]

    def cached(i: int) -> set[str]:
        return {p.name for p in local[i].iterdir() if not p.name.startswith(".")} if local[i].exists() else set()

    first = to0.post("/v1/jobs", json=CACHE_JOB).json()["id"]
    _done(to0, first, logs)
    assert len(cached(0)) == 1 and cached(1) == set()  # extracted on host 0 only
    second = to1.post("/v1/jobs", json=CACHE_JOB).json()["id"]
    _done(to1, second, logs)
    assert cached(1) == cached(0)  # host 1 now holds a copy of the same store
    r1, r2 = (to0.get(f"/v1/jobs/{j}/result").json() for j in (first, second))
    assert r1["environment"]["feature_cache_hit"] is False
    assert r2["environment"]["feature_cache_hit"] is True  # copied from the store: no second extraction
    print(f"extract: {r1['timings'].get('extract'):.2f} s on host 0, {r2['timings'].get('extract'):.2f} s on host 1")
    assert r2["timings"]["extract"] < r1["timings"]["extract"]
    assert [p["accuracy"] for p in r1["curve"]] == [p["accuracy"] for p in r2["curve"]]
    hosts["fs"].invalidate_cache()
    keys = {p.rsplit("/", 1)[-1] for p in hosts["fs"].ls(f"{hosts['store']}/features", detail=False)}
    assert keys == cached(1)


def test_an_upload_job_runs_on_a_host_without_the_file(hosts: dict[str, Any]) -> None:
    from tests.service.test_service_uploads import D_EMB, npz_bytes, upload_job

    api, fs, logs = hosts["api"], hosts["fs"], hosts["logs"]
    blob = npz_bytes(seed=7, n_train=90, n_test=45)
    r = api.post("/v1/datasets", files={"file": ("vectors.npz", blob, "application/octet-stream")})
    assert r.status_code == 201, r.text
    upload_id = r.json()["id"]
    assert upload_id == hashlib.sha256(blob).hexdigest()
    fs.invalidate_cache()
    assert fs.exists(f"{hosts['store']}/uploads/anonymous/{upload_id}.npz")
    r = api.post("/v1/jobs", json=upload_job(upload_id) | {"bootstrap": 0, "baselines": []})
    assert r.status_code == 202, r.text
    job = _done(api, r.json()["id"], logs)
    report = api.get(f"/v1/jobs/{job['id']}/result").json()
    assert report["dataset"]["spec"] == f"upload:{upload_id}" and report["model"]["d"] == D_EMB
    assert api.get(f"/v1/jobs/{job['id']}/artifact").status_code in (200, 409)
    assert api.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert api.delete(f"/v1/datasets/{upload_id}").status_code == 204
    fs.invalidate_cache()
    assert not fs.exists(f"{hosts['store']}/uploads/anonymous/{upload_id}.npz")
    assert _store_files(fs, f"{hosts['store']}/jobs/{job['id']}") == []


def test_a_worker_killed_mid_shard_is_replaced_by_the_other(hosts: dict[str, Any], small_job: dict) -> None:
    """Runs last (it kills host 1's worker): the maintenance sweep requeues the job once host 1's heartbeat
    is stale, host 0 redoes only the shard missing from the store, and the curve is the one of the
    undisturbed sharded job (no shard lost, none counted twice: the same n, accuracies and CKA)."""
    import os
    import signal

    api, logs, procs = hosts["api"], hosts["logs"], hosts["procs"]
    want = hosts["sharded_curve"]
    job_id = api.post("/v1/jobs", json=small_job).json()["id"]
    deadline = time.monotonic() + 120
    while (api.get(f"/v1/jobs/{job_id}").json()["images_done"] or 0) == 0:
        assert time.monotonic() < deadline, "no shard started"
        time.sleep(0.1)
    os.kill(procs[1].pid, signal.SIGKILL)
    procs[1].wait(timeout=10)
    t0 = time.monotonic()
    job = _done(api, job_id, logs, timeout=300)
    print(f"recovered after the kill in {time.monotonic() - t0:.1f} s, attempts={job['attempts']}")
    report = api.get(f"/v1/jobs/{job_id}/result").json()
    got = {(p["kind"], p["k"], p["seed"]): (p["accuracy"], p.get("cka")) for p in report["curve"]}
    assert got.keys() == want.keys()
    for key, (acc, cka) in want.items():
        assert abs(got[key][0] - acc) < 1e-9, key
        assert (cka is None) == (got[key][1] is None) and (cka is None or abs(got[key][1] - cka) < 1e-6), key
    assert api.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert _store_files(hosts["fs"], f"{hosts['store']}/jobs/{job_id}") == []
