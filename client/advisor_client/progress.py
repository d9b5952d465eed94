"""A one-line progress bar for a job on stderr: status, stage, percent, images done/total and ETA
when the server reports them, and the worker's message.

On a terminal the line is redrawn in place; in a log (CI) a new line is written only when the
status or stage changes or progress crosses another 10%, so logs stay short.
"""

from __future__ import annotations

import sys
from typing import TextIO

from advisor_client.models import JobInfo

BAR_WIDTH = 24


def eta_text(job: JobInfo) -> str | None:
    """``ETA 42 s`` from the server's ``eta_s`` while the job runs (the web UI writes the same); else None."""
    if job.eta_s is None or job.status != "running":
        return None
    return f"ETA {job.eta_s:.0f} s"


def describe(job: JobInfo, width: int = BAR_WIDTH) -> str:
    """The bar's text for one snapshot."""
    filled = int(round(job.progress * width))
    bar = "#" * filled + "." * (width - filled)
    parts = [f"job {job.id[:8]}", f"[{bar}]", f"{100 * job.progress:5.1f}%", job.status]
    if job.stage and job.status == "running":
        parts.append(job.stage)
    if job.images_done is not None and job.images_total:
        parts.append(f"images {job.images_done}/{job.images_total}")
    eta = eta_text(job)
    if eta:
        parts.append(eta)
    if job.message and not job.done:
        parts.append(job.message)
    return "  ".join(parts)


class ProgressBar:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_key: tuple[str, str | None, int] | None = None
        self._last_len = 0

    def update(self, job: JobInfo) -> None:
        text = describe(job)
        if self.tty:
            pad = max(0, self._last_len - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._last_len = len(text)
        else:
            key = (job.status, job.stage, int(job.progress * 10))
            if key == self._last_key:
                return
            self._last_key = key
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._last_len:
            self.stream.write("\n")
            self.stream.flush()
            self._last_len = 0
