"""The API of an engine test: migrated SQLite settings, a queue that records what is sent, the app under a
TestClient, and the real worker (`execute_job` with `run_analysis`) run on what was sent."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from redundancy.pipeline import run_analysis
from service.core import migrate
from service.core.config import Settings
from service.core.db import dispose_all
from service.main import create_app
from tests.service.conftest import RecordingQueue, make_settings
from workers.runner import execute_job


@dataclass
class Served:
    settings: Settings
    queue: RecordingQueue
    client: TestClient

    def run_sent(self) -> str:
        """Run the job sent last with the real engine; its outcome."""
        return execute_job(self.queue.sent.pop(), self.settings, analyze=run_analysis, worker_name="test")

    def submit_and_run(self, body: dict[str, Any]) -> str:
        """POST ``body`` (202), run it, and check it succeeded; its id."""
        r = self.client.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        assert self.run_sent() == "succeeded"
        assert self.client.get(f"/v1/jobs/{r.json()['id']}").json()["status"] == "succeeded"
        return str(r.json()["id"])


@contextmanager
def served(tmp_path: Path, data_roots: str) -> Iterator[Served]:
    """The app over fresh settings in ``tmp_path / "srv"`` (no rate limit; these data roots)."""
    settings = make_settings(tmp_path / "srv", rate_limit="", data_roots=data_roots)
    migrate.upgrade(settings.db_url)
    queue = RecordingQueue()
    try:
        with TestClient(create_app(settings, queue=queue, maintenance=False)) as client:
            yield Served(settings, queue, client)
    finally:
        dispose_all()
