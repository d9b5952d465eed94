"""Issue 9 §5–6 against real processes (embedded mode: `advisor serve` with its worker subprocess):
kill -9 the worker mid-extraction → the job finishes and its result is stored once; kill -9 the server
→ its worker does not outlive it, and a restart finishes the job; a second server or worker on the same
data directory is refused."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import SMALL_JOB
from tests.integration.procs import ROOT, Server, alive, children, clean_env, wait_job, wait_until

pytestmark = pytest.mark.integration

# Long enough that extraction is still going when we kill (tens of seconds on a busy 2-core CPU).
SLOW_JOB: dict[str, Any] = SMALL_JOB | {
    "dataset": {"spec": "digits", "max_train": 1500, "max_test": 300},
    "image_size": 64,
}


def _worker_pid(server: Server) -> int:
    def find() -> int | None:
        kids = [p for p in children(server.proc.pid) if "worker" in Path(f"/proc/{p}/cmdline").read_text()]
        return kids[0] if kids else None

    return int(wait_until(find, 60, server.tail))


def _extracting(server: Server, job_id: str) -> dict[str, Any]:
    with server.client() as c:
        return wait_job(c, job_id, ("running",), timeout=120, why=server.tail) and wait_until(
            lambda: (j := c.get(f"/v1/jobs/{job_id}").json())["stage"] == "extract" and j, 120, server.tail
        )


def _stored_once(data: Path, job_id: str) -> tuple[int, int, int]:
    """(attempts, result rows, curve rows per fraction×seed) straight from the database."""
    with sqlite3.connect(data / "advisor.sqlite") as db:
        attempts = db.execute("SELECT attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
        results = db.execute("SELECT count(*) FROM job_results WHERE job_id = ?", (job_id,)).fetchone()[0]
        dupes = db.execute(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM curve_points WHERE job_id = ? "
            "GROUP BY kind, position, seed)", (job_id,)).fetchone()[0]
    return attempts, results, dupes


def test_kill_9_worker_mid_extraction_finishes_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(clean_env(DATA_DIR=str(data)), tmp_path / "serve.log")
    try:
        server.wait_ready()
        with server.client() as c:
            job = c.post("/v1/jobs", json=SLOW_JOB).json()
            _extracting(server, job["id"])
            victim = _worker_pid(server)
            os.kill(victim, signal.SIGKILL)
            done = wait_job(c, job["id"], timeout=240, why=server.tail)
            assert done["status"] == "succeeded", (done, server.tail())
            assert c.get(f"/v1/jobs/{job['id']}/result").status_code == 200
        assert not alive(victim)
        attempts, results, dupes = _stored_once(data, job["id"])
        assert (attempts, results, dupes) == (2, 1, 1)
    finally:
        server.stop()


def test_kill_9_server_leaves_no_orphan_and_a_restart_finishes_the_job(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = clean_env(DATA_DIR=str(data))
    server = Server(env, tmp_path / "serve.log")
    try:
        server.wait_ready()
        with server.client() as c:
            job = c.post("/v1/jobs", json=SLOW_JOB).json()
        _extracting(server, job["id"])
        worker = _worker_pid(server)
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        wait_until(lambda: not alive(worker), 15, lambda: f"embedded worker {worker} outlived its server")
    finally:
        server.stop()
    again = Server(env, tmp_path / "serve2.log")
    try:
        again.wait_ready()
        with again.client() as c:
            done = wait_job(c, job["id"], timeout=240, why=again.tail)
        assert done["status"] == "succeeded", (done, again.tail())
        assert _stored_once(data, job["id"])[1:] == (1, 1)
    finally:
        again.stop()


def test_one_server_and_one_worker_per_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = clean_env(DATA_DIR=str(data))
    server = Server(env, tmp_path / "serve.log")
    try:
        server.wait_ready()
        _worker_pid(server)
        wait_until(lambda: (data / "worker.lock").exists(), 60, server.tail)
        second = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--port", "0"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "is in use by" in second.stderr, second.stderr[-2000:]
        worker = subprocess.run([sys.executable, "-m", "service.cli", "worker", "--pool=solo"], env=env,
                                cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert worker.returncode == 2 and "is in use by" in worker.stderr, worker.stderr[-2000:]
    finally:
        server.stop()


def test_several_web_workers_need_postgres(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--workers", "2", "--port", "0"],
                         env=clean_env(DATA_DIR=str(tmp_path / "data")), cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "Postgres" in out.stderr, out.stderr[-2000:]
