"""Queues by device (issue 23 item 3) with real processes: Redis, Postgres, and two `advisor worker` processes
on distinct queues, one `--queues cpu`, one `--queues gpu` (forced to run on cpu by `ADVISOR_DEVICE=cpu`, so it
runs on this machine). A `device: cpu` job runs on the cpu-queue worker and a `device: cuda` job on the
gpu-queue worker (the job's recorded worker process is theirs); with no gpu-queue worker, a cuda job waits with
stage `waiting for a gpu worker` and the gpu queue's depth, and one that allows it falls back to the cpu queue
in the API's maintenance sweep and runs on the cpu worker."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from service.core.queue import GPU_WAITING_STAGE
from tests.integration.conftest import ROOT, wait_for
from tests.integration.processes import stop_process

pytestmark = pytest.mark.integration


def _start_worker(env: dict[str, str], queues: str, log: Path) -> subprocess.Popen:
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", "--pool=solo", "--concurrency=1",
             f"--queues={queues}", f"--hostname={queues}-{env['ADVISOR_QUEUE']}@%h"],
            env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
        )


def _poll(client: Any, job_id: str, until: Callable[[dict[str, Any]], bool], log: Path,
          timeout: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if until(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id}: condition not reached in {timeout}s: {job}\n"
                                 f"{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def device_stack(stack_env: dict[str, str], migrated: None,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An API (maintenance every 0.5 s) on a queue of its own, and a cpu-queue worker; the test starts the
    gpu-queue worker when it wants one."""
    from fastapi.testclient import TestClient

    from service.core.config import Settings
    from service.main import create_app

    queue = f"{stack_env['ADVISOR_QUEUE']}-dev"  # the session's cleanup deletes its keys
    env = {**stack_env, "ADVISOR_QUEUE": queue}
    logs = tmp_path_factory.mktemp("device-workers")
    procs = {"cpu": _start_worker(env, "cpu", logs / "cpu.log")}
    settings = Settings(database_url=env["DATABASE_URL"], broker_url=env["BROKER_URL"],
                        data_dir=Path(env["DATA_DIR"]), queue=queue, heartbeat=0.5, maintenance_interval=0.5)

    def start_gpu_worker() -> subprocess.Popen:
        procs["gpu"] = _start_worker({**env, "ADVISOR_DEVICE": "cpu"}, "gpu", logs / "gpu.log")
        return procs["gpu"]

    with TestClient(create_app(settings)) as client:
        yield {"client": client, "procs": procs, "logs": logs, "settings": settings, "start_gpu": start_gpu_worker}
    for p in procs.values():
        stop_process(p)


def _worker_pid(settings: Any, job_id: str) -> int:
    from service.core.db import session_scope
    from service.core.models import Job
    from service.core.process import ProcessId

    with session_scope(settings.db_url) as s:
        job = s.get(Job, job_id)
        parsed = ProcessId.parse(job.worker)
    assert parsed is not None, job.worker
    return parsed.pid


def test_cuda_job_waits_then_falls_back_or_runs_on_the_gpu_queue_worker(device_stack, small_job) -> None:
    client, procs, logs, settings = (device_stack[k] for k in ("client", "procs", "logs", "settings"))
    cpu_log = logs / "cpu.log"

    # no gpu-queue worker yet: a cuda job that may not fall back waits, showing the gpu queue's depth
    waiting = client.post("/v1/jobs", json={**small_job, "device": "cuda"}).json()
    assert waiting["stage"] == GPU_WAITING_STAGE and waiting["device"]["queue"] == "gpu"
    seen = _poll(client, waiting["id"], lambda j: (j["waiting"] or {}).get("queue_depth") is not None, cpu_log)
    assert seen["status"] == "queued" and seen["waiting"]["workers_alive"] == 0  # the cpu worker beats, on cpu
    depth = seen["waiting"]["queue_depth"]
    assert seen["stage"] == f"{GPU_WAITING_STAGE} (none seen in the last 20 s; queue depth {depth})"
    assert depth >= 1 and seen["waiting"]["fallback_at"] is None

    # one that allows it falls back to the cpu queue after 2 s and runs on the cpu-queue worker
    fallback = client.post("/v1/jobs", json={**small_job, "device": "cuda", "device_fallback_after": 2}).json()
    assert fallback["waiting"]["fallback_at"] is not None
    done = wait_for(client, fallback["id"], {"succeeded", "failed"}, worker_log=cpu_log)
    assert done["status"] == "succeeded", done
    assert done["device"]["queue"] == "cpu" and done["device"]["fell_back_at"] is not None
    assert _worker_pid(settings, fallback["id"]) == procs["cpu"].pid
    assert client.get(f"/v1/jobs/{waiting['id']}").json()["status"] == "queued", "the other one still waits"

    # a cpu job runs on the cpu-queue worker
    cpu = client.post("/v1/jobs", json={**small_job, "device": "cpu", "seeds": 2}).json()
    assert wait_for(client, cpu["id"], {"succeeded", "failed"}, worker_log=cpu_log)["status"] == "succeeded"
    assert _worker_pid(settings, cpu["id"]) == procs["cpu"].pid

    # a gpu-queue worker starts: the waiting cuda job runs there, and so does a new one
    gpu = device_stack["start_gpu"]()
    gpu_log = logs / "gpu.log"
    assert wait_for(client, waiting["id"], {"succeeded", "failed"}, worker_log=gpu_log)["status"] == "succeeded"
    assert _worker_pid(settings, waiting["id"]) == gpu.pid
    cuda = client.post("/v1/jobs", json={**small_job, "device": "cuda", "seeds": 3}).json()
    done = wait_for(client, cuda["id"], {"succeeded", "failed"}, worker_log=gpu_log)
    assert done["status"] == "succeeded" and done["device"]["fell_back_at"] is None
    assert _worker_pid(settings, cuda["id"]) == gpu.pid
    report = client.get(f"/v1/jobs/{cuda['id']}/result").json()
    assert report["environment"]["device"] == "cpu", "the worker's ADVISOR_DEVICE=cpu wins over the gpu queue's cuda"

    # the gpu-queue worker has been beating in the database; a warm shutdown deletes its row
    assert _gpu_workers_alive(settings) == 1
    stop_process(gpu)
    assert _gpu_workers_alive(settings) == 0


def _gpu_workers_alive(settings: Any) -> int:
    from service.core import presence
    from service.core.db import session_scope
    from service.core.queue import queue_name

    with session_scope(settings.db_url) as s:
        return presence.alive(s, queue_name(settings.queue, "gpu"), settings.stale_after)
