"""The embedded default, end to end in a subprocess: `advisor serve` with no configuration at all
(SQLite + SQLite broker + a worker subprocess), no Postgres and no Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from redundancy.advice.recommend import intervals_from_summary
from redundancy.report import Report
from redundancy.verdict import advise
from tests.service.conftest import single_layer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("shard_size", [None, 150], ids=["unsharded", "sharded"])
def test_embedded_serve_runs_a_job_end_to_end(tmp_path, small_job, shard_size):
    """Sharded (400 images in shards of 150), the job runs as a chord on the SQLite broker with the
    SQLite result backend, on the one solo worker."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BROKER_URL") and not k.startswith("ADVISOR_")}
    env.update({"DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"})
    if shard_size is not None:
        env["ADVISOR_SHARD_SIZE"] = str(shard_size)
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
                                env=env, cwd=tmp_path, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, log.read_text()[-3000:]
                try:
                    if c.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.3)
            job = c.post("/v1/jobs", json=small_job).json()
            deadline = time.monotonic() + 150
            while True:
                got = c.get(f"/v1/jobs/{job['id']}").json()
                if got["status"] in ("succeeded", "failed", "cancelled"):
                    break
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.3)
            assert got["status"] == "succeeded", (got, log.read_text()[-3000:])
            report = Report.model_validate(c.get(f"/v1/jobs/{job['id']}/result").json())
            rec = c.get(f"/v1/jobs/{job['id']}/recommendation", params={"delta": 0.05, "delta_mode": "absolute"})
            want = single_layer(advise(report.curve, report.dataset.classes, report.model.d, 0.05, "absolute",
                                       intervals=intervals_from_summary(report.summary)), report.model.layer)
            assert rec.json() | want.model_dump(mode="json", by_alias=True) == rec.json()
            assert rec.json()["fraction"] == want.fraction and rec.json()["k"] == want.k
        assert (tmp_path / "data" / "advisor.sqlite").exists() and (tmp_path / "data" / "broker.sqlite").exists()
        if shard_size is None:
            assert list((tmp_path / "data" / "cache" / "features").glob("*")), "the feature cache lives in DATA_DIR"
        else:
            assert (tmp_path / "data" / "results.sqlite").exists(), "the chord's result backend"
            assert not list((tmp_path / "data" / "artifacts" / "jobs").glob("*")), "shard artifacts are dropped"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    # The embedded worker went down with the server (same session/process group).
    time.sleep(1)
    leftover = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
    if leftover:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not leftover, "the embedded worker outlived the server"
