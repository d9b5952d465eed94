"""A real server for the client: `advisor serve` in its embedded mode (SQLite database, SQLite broker,
one Celery worker subprocess) on a free loopback port with a temporary DATA_DIR, started once per
session. The client package is imported from `client/` so the tests run with or without
`pip install ./client`, and every subprocess the tests start sees the same tree."""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.schemas import SMALL_JOB_EXAMPLE

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SRC = ROOT / "client"
if str(CLIENT_SRC) not in sys.path:
    sys.path.insert(0, str(CLIENT_SRC))

# A job that runs long enough to be cancelled or to outlast a zero timeout (it is never left to finish).
SLOW_JOB: dict[str, Any] = {
    "model": {"name": "resnet18", "weights": "random"},
    "dataset": {"spec": "digits"},
    "image_size": 160,
    "batch_size": 16,  # a cancel is seen between batches: keep them short
    "seeds": 5,
    "deltas": [0.01],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: this tree and client/ first on the path, the venv's bin
    (where `advisor` lives) first on PATH, and no production settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BROKER_URL") and not k.startswith("ADVISOR_")}
    paths = [str(ROOT), str(CLIENT_SRC)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["HF_HUB_OFFLINE"] = "1"
    env.update(extra)
    return env


BROKEN_NPZ = Path(tempfile.gettempdir()) / "advisor-client-tests" / "broken.npz"


def _broken_npz() -> Path:
    """A file the server accepts (it exists under an allowed root) and the engine fails: no npz archive."""
    BROKEN_NPZ.parent.mkdir(exist_ok=True)
    BROKEN_NPZ.write_bytes(b"not an npz archive")
    return BROKEN_NPZ


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("advisor-server")
    port = free_port()
    log = tmp / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--log-level", "warning"],
            # BROKEN_NPZ's folder: an allowed root, so a broken dataset there is accepted and fails in the worker
            env=subprocess_env(DATA_DIR=str(tmp / "data"), ADVISOR_DATA_ROOTS=f"{tmp / 'data'},{_broken_npz().parent}"),
            cwd=tmp, stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        # Nothing of the server's process group (the embedded worker) may outlive it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def child_env() -> Callable[..., dict[str, str]]:
    return subprocess_env


@pytest.fixture
def unreachable_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


@pytest.fixture
def small_job() -> dict[str, Any]:
    return copy.deepcopy(SMALL_JOB_EXAMPLE)


@pytest.fixture
def slow_job() -> dict[str, Any]:
    return copy.deepcopy(SLOW_JOB)
