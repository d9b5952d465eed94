"""Real processes for the fault tests: `advisor serve` subprocesses, readiness, pids and kill -9."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
FINISHED = ("succeeded", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any service configuration, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BROKER_URL", "DATA_DIR") and not k.startswith("ADVISOR_")}
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


class Server:
    """`python -m service.cli serve` on a free port, its output in ``log``."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port), *args],
                env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout: float = 120.0) -> None:
        wait_until(lambda: _ready(self.url), timeout, self.tail, alive=self.proc)

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30), **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(cond: Callable[[], Any], timeout: float, why: Callable[[], str] = lambda: "",
               alive: subprocess.Popen[bytes] | None = None, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if alive is not None and alive.poll() is not None:
            raise AssertionError(f"process exited with {alive.returncode}\n{why()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s\n{why()}")
        time.sleep(every)


def wait_job(client: httpx.Client, job_id: str, statuses: tuple[str, ...] = FINISHED, timeout: float = 180.0,
             why: Callable[[], str] = lambda: "") -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        try:
            job = client.get(f"/v1/jobs/{job_id}").json()
        except httpx.HTTPError:
            return None
        return job if job.get("status") in statuses else None

    return wait_until(check, timeout, why)


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False
