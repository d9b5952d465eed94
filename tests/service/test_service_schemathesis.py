"""The OpenAPI document is the contract: schemathesis (`--checks all`, every phase, bounded examples)
against a real uvicorn server with an in-process queue finds nothing.

`positive_data_acceptance` is told that 400 and 422 are legitimate answers to schema-valid input
(tests/service/schemathesis.toml): some rules cannot be JSON Schema (a timm model name, a path under
the server's data roots, bundled weights only for their model, a page token this server issued).
Every other check runs with its defaults.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from service.core import migrate
from service.core.config import Settings
from service.main import create_app

HERE = Path(__file__).resolve().parent
MAX_EXAMPLES = int(os.environ.get("ADVISOR_SCHEMATHESIS_EXAMPLES", "8"))


class DiscardingQueue:
    def enqueue(self, job_id: str) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'st.sqlite'}",
                        broker_url=None, maintenance_interval=0, rate_limit="", max_active_jobs=10_000)
    migrate.upgrade(settings.db_url)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(settings, queue=DiscardingQueue(), maintenance=False),
                                        host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_schemathesis_finds_nothing(server: str, tmp_path: Path):
    st = shutil.which("st", path=os.path.dirname(sys.executable)) or shutil.which("st")
    if st is None:
        pytest.fail("schemathesis is a dev dependency: pip install -e '.[dev]'")
    out = subprocess.run(
        [st, "--config-file", str(HERE / "schemathesis.toml"), "run", f"{server}/openapi.json",
         "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", "9",
         "--generation-database", "none", "--workers", "1", "--no-color"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    report = out.stdout[-6000:] + out.stderr[-2000:]
    assert out.returncode == 0, report
    assert "No issues found" in out.stdout or " 0 failures" in out.stdout or "failures" not in out.stdout, report
