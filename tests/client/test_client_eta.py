"""`advisor status` and the progress bar print the server's ETA (`eta_s`) the same way, and only while the
job runs; the web UI writes the same text (tests/ui/test_ui_browser.py compares them on one job)."""

from __future__ import annotations

from typing import Any

from advisor_client.cli import format_job
from advisor_client.models import JobInfo
from advisor_client.progress import describe, eta_text

JOB: dict[str, Any] = {
    "id": "6f1c2b8e-3f7a-4d1e-9c55-2b0c7d1e9a01", "status": "running", "stage": "extract", "progress": 0.3,
    "created_at": "2026-01-01T12:00:00Z", "config_hash": "x", "images_done": 300, "images_total": 1234,
    "eta_s": 129.0, "links": {k: "/" for k in ("self", "result", "recommendation", "cancel", "plot_png",
                                               "plot_svg", "deliveries", "artifact")},
}


def test_status_line_and_bar_print_the_servers_eta_alike() -> None:
    info = JobInfo.model_validate(JOB)
    assert eta_text(info) == "ETA 129 s"
    assert "ETA 129 s" in format_job(info) and "ETA 129 s" in describe(info)


def test_no_eta_when_unknown_or_not_running() -> None:
    for over in ({"eta_s": None}, {"status": "succeeded", "stage": "done", "progress": 1.0}):
        info = JobInfo.model_validate({**JOB, **over})
        assert eta_text(info) is None and "ETA" not in format_job(info)
