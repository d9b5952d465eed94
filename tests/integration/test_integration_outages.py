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
