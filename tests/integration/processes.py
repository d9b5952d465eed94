"""Worker processes for the integration tests: started as an operator would, stopped warm (SIGTERM) first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_celery_worker(env: dict[str, str], queues: str, log: Path, name: str) -> subprocess.Popen:
    """`celery -A workers.celery_app worker --pool=solo` on `queues`, its output in `log`."""
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool=solo",
             "--concurrency=1", f"--queues={queues}", "--loglevel=info",
             "--without-gossip", "--without-mingle", "--without-heartbeat", f"--hostname={name}@%h"],
            env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
        )


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM (a worker's warm shutdown), then SIGKILL after 20 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
