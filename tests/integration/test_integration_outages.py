"""Issue 9 §6: a private Postgres cluster (never the machine's shared one) is stopped under a running
`advisor serve`: every read is answered 503 + Retry-After during the outage (no hang, no 500), and the
server recovers by itself when Postgres is back. Skipped only when the Postgres binaries are absent."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.core import migrate
from service.core.db import dispose_all
from tests.integration.procs import Server, clean_env, free_port, wait_until

pytestmark = pytest.mark.integration
BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


class PrivatePostgres:
    def __init__(self, root: Path) -> None:
        if not BIN:
            pytest.skip("no Postgres binaries under /usr/lib/postgresql/*/bin")
        self.bin = Path(BIN[-1])
        self.dir, self.sock = root / "pgdata", root / "pgsock"
        self.sock.mkdir()
        self.port = free_port()
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(root, "postgres")
            shutil.chown(self.sock, "postgres")
        self._run("initdb", "-D", str(self.dir), "-A", "trust", "-U", "postgres", "--no-sync")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        out = subprocess.run([*self.as_postgres, str(self.bin / tool), *args], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir), "-l", str(self.dir.parent / "pg.log"), "-w", "-o",
                  f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir), "-m", "fast", "-w", "stop")


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    root = Path(tempfile.mkdtemp(prefix="advisor-pg-"))  # not under pytest's dir: postgres must reach it
    pg = PrivatePostgres(root)
    pg.start()
    try:
        yield pg
    finally:
        dispose_all()
        subprocess.run([*pg.as_postgres, str(pg.bin / "pg_ctl"), "-D", str(pg.dir), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_restart_gives_503_then_recovers(private_pg: PrivatePostgres, tmp_path: Path) -> None:
    migrate.upgrade(private_pg.url)
    dispose_all()
    server = Server(clean_env(DATABASE_URL=private_pg.url, DATA_DIR=str(tmp_path / "data")), tmp_path / "serve.log",
                    "--no-worker")
    try:
        server.wait_ready()
        with server.client(timeout=15) as c:
            assert c.get("/v1/jobs").status_code == 200
            private_pg.stop()
            for _ in range(5):
                r = c.get("/v1/jobs")
                assert r.status_code == 503, (r.status_code, r.text, server.tail())
                assert r.headers["content-type"] == "application/problem+json"
                assert int(r.headers["retry-after"]) > 0
            private_pg.start()

            def back() -> bool:
                try:
                    return c.get("/v1/jobs").status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(back, 60, server.tail)
    finally:
        server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[dict[str, object]]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("no redis-server")
    port = free_port()
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    state: dict[str, object] = {"url": f"redis://127.0.0.1:{port}/0", "proc": subprocess.Popen(cmd,
                                stdout=subprocess.DEVNULL), "cmd": cmd}
    yield state
    proc = state["proc"]
    assert isinstance(proc, subprocess.Popen)
    proc.kill()
    proc.wait(timeout=10)


def test_redis_restart_loses_no_job(private_redis: dict[str, object], tmp_path: Path, small_job) -> None:  # type: ignore[no-untyped-def]
    """Redis dies (kill -9, no persistence: every message in it is gone) while jobs are submitted; once
    it is back, the sweep re-sends every queued job from the database and all of them succeed."""
    from tests.integration.conftest import _pg_reachable, fresh_pg_database

    if reason := _pg_reachable():
        pytest.skip(reason)
    with fresh_pg_database() as db_url:
        migrate.upgrade(db_url)
        dispose_all()
        env = clean_env(DATABASE_URL=db_url, BROKER_URL=str(private_redis["url"]), DATA_DIR=str(tmp_path / "data"),
                        ADVISOR_HEARTBEAT="0.5")
        server = Server(env, tmp_path / "serve.log", "--worker")
        try:
            server.wait_ready()
            with server.client(timeout=60) as c:
                first = c.post("/v1/jobs", json=small_job).json()
                proc = private_redis["proc"]
                assert isinstance(proc, subprocess.Popen)
                proc.kill()
                proc.wait(timeout=10)
                during = [c.post("/v1/jobs", json={**small_job, "seeds": s}) for s in (3, 4)]
                assert [r.status_code for r in during] == [202, 202], [r.text for r in during]
                private_redis["proc"] = subprocess.Popen(private_redis["cmd"], stdout=subprocess.DEVNULL)  # type: ignore[arg-type]
                for job_id in [first["id"], *(r.json()["id"] for r in during)]:
                    done = wait_until(lambda j=job_id: (x := c.get(f"/v1/jobs/{j}").json())["status"]
                                      in ("succeeded", "failed", "cancelled") and x, 240, server.tail, every=0.5)
                    assert done["status"] == "succeeded", (done, server.tail())
        finally:
            server.stop()
