"""One job over two real worker processes (issue 13): its extraction as a Celery chord of shards, then a
reduce. Against the library's own unsharded `analyze` on the same config, the sharded job's curve
(every accuracy, CKA and λ: functions of the summed statistics and the joined features) agrees within
floating-point tolerance and its recommendations are identical; so they are when one worker is killed
(SIGKILL) mid-shard: the maintenance sweep requeues the job and the new attempt redoes only the shards
missing from the artifact store."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from redundancy import AnalysisConfig, Runtime, analyze
from tests.integration.conftest import wait_for
from tests.integration.processes import start_celery_worker, stop_process

pytestmark = pytest.mark.integration
SHARD_SIZE = 100  # the small job has 400 images (train + val + test): 4 shards


@pytest.fixture(scope="module")
def shard_stack(stack_env: dict[str, str], migrated: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Two workers on a queue of their own with a shard size of 100 rows, and an API whose maintenance
    sweep requeues a job 15 s after its last heartbeat."""
    from fastapi.testclient import TestClient

    from service.core.config import Settings
    from service.main import create_app

    queue = f"advisor-shards-{uuid.uuid4().hex[:8]}"
    env = {**stack_env, "ADVISOR_QUEUE": queue, "ADVISOR_SHARD_SIZE": str(SHARD_SIZE), "ADVISOR_STALE_AFTER": "15"}
    logs = tmp_path_factory.mktemp("shard-workers")
    procs = [start_celery_worker(env, env["ADVISOR_QUEUE"], logs / f"w{i}.log", f"shard{i}-{queue}") for i in range(2)]
    settings = Settings(database_url=env["DATABASE_URL"], broker_url=env["BROKER_URL"],
                        data_dir=Path(env["DATA_DIR"]), queue=queue, heartbeat=0.5, stale_after=15.0,
                        maintenance_interval=0.5, shard_size=SHARD_SIZE)
    with TestClient(create_app(settings)) as client:
        yield client, procs, logs, settings
    for p in procs:
        stop_process(p)


@pytest.fixture(scope="module")
def unsharded(small_job_module: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The same config through the library in one pass over every row."""
    tmp = tmp_path_factory.mktemp("unsharded")
    return analyze(AnalysisConfig.model_validate(small_job_module),
                   Runtime(cache_dir=None, data_root=tmp, work_dir=tmp / "work"))


@pytest.fixture(scope="module")
def small_job_module() -> dict[str, Any]:
    from service.api.schemas import SMALL_JOB_EXAMPLE

    return dict(SMALL_JOB_EXAMPLE)


def _assert_same_result(client: Any, job_id: str, expected: Any) -> None:
    report = client.get(f"/v1/jobs/{job_id}/result").json()
    got = {(p["kind"], p["k"], p["seed"]): p for p in report["curve"]}
    want = {(p.kind, p.k, p.seed): p for p in expected.curve}
    assert got.keys() == want.keys()
    for key, p in want.items():
        np.testing.assert_allclose(got[key]["accuracy"], p.accuracy, atol=1e-9, err_msg=str(key))
        if p.cka is not None:
            np.testing.assert_allclose(got[key]["cka"], p.cka, rtol=1e-6, err_msg=str(key))
        np.testing.assert_allclose(got[key]["lam"], p.lam, rtol=1e-6, err_msg=str(key))
    recs = client.get(f"/v1/jobs/{job_id}/result").json()["recommendations"]
    assert [(r["delta"], r["k"], r["fraction"]) for r in recs] == [
        (r.delta, r.k, r.fraction) for r in expected.recommendations]


def _poll(client: Any, job_id: str, until: Any, timeout: float = 240.0) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        seen.append(job)
        if until(job):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"job {job_id}: condition not reached in {timeout}s: {seen[-1]}")


def test_sharded_job_equals_unsharded_analysis(shard_stack, small_job_module, unsharded) -> None:
    client, procs, logs, _ = shard_stack
    job_id = client.post("/v1/jobs", json=small_job_module).json()["id"]
    seen = _poll(client, job_id, lambda j: j["status"] in {"succeeded", "failed", "cancelled"})
    job = seen[-1]
    assert job["status"] == "succeeded", (job, (logs / "w0.log").read_text()[-3000:])
    extracting = [j for j in seen if j["stage"] == "extract" and j["images_total"]]
    assert extracting and {j["images_total"] for j in extracting} == {400}
    dones = [j["images_done"] for j in extracting]
    assert dones == sorted(dones) and all(0 <= d <= 400 for d in dones)
    _assert_same_result(client, job_id, unsharded)
    # both workers took shards
    for i in range(2):
        assert "advisor.run_shard" in (logs / f"w{i}.log").read_text(), f"worker {i} ran no shard"


_SHARD_RECEIVED = re.compile(r"Task advisor\.run_shard\[([0-9a-f-]+)\] received")
_SHARD_ENDED = re.compile(r"Task advisor\.run_shard\[([0-9a-f-]+)\] (?:succeeded|raised|retry|failed)")


def _shards_in_flight(log: Path) -> set[str]:
    """The shard tasks a worker has taken and not finished, from its own log (Celery's lines). A solo
    worker with prefetch 1 takes a message only when it is free, so a shard it has received is the one
    it is running."""
    text = log.read_text(errors="replace")
    return set(_SHARD_RECEIVED.findall(text)) - set(_SHARD_ENDED.findall(text))


def _holding_a_shard(procs: list[subprocess.Popen], logs: Path, timeout: float = 120) -> tuple[subprocess.Popen, Path]:
    """A live worker with a shard in flight, as soon as one has one (polled every 20 ms: a shard takes
    0.25 s or more here, so the kill lands inside it; the caller checks that it did)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i, p in enumerate(procs):
            if p.poll() is None and _shards_in_flight(logs / f"w{i}.log"):
                return p, logs / f"w{i}.log"
        time.sleep(0.02)
    raise AssertionError(f"no worker took a shard within {timeout}s")


def test_killing_a_worker_mid_shard_still_gives_the_same_result(shard_stack, small_job_module, unsharded) -> None:
    client, procs, logs, _ = shard_stack
    job_id = client.post("/v1/jobs", json=small_job_module).json()["id"]
    victim, victim_log = _holding_a_shard(procs, logs)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    # its log is final now: the shard it held never finished, so the chord cannot complete on attempt 1
    assert _shards_in_flight(victim_log), victim_log.read_text()[-3000:]
    job = wait_for(client, job_id, {"succeeded", "failed", "cancelled"}, timeout=300)
    assert job["status"] == "succeeded", job
    assert job["attempts"] >= 2  # the lost shard was recovered by a new attempt of the job
    _assert_same_result(client, job_id, unsharded)


def test_cancel_stops_every_shard(shard_stack, small_job_module) -> None:
    client, procs, logs, settings = shard_stack
    job_id = client.post("/v1/jobs", json=small_job_module).json()["id"]
    _poll(client, job_id, lambda j: (j["images_done"] or 0) > 0)
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code in (200, 202)
    job = wait_for(client, job_id, {"succeeded", "failed", "cancelled"}, timeout=120)
    assert job["status"] == "cancelled", job
