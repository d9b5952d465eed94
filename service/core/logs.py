"""How the service's processes log: plain text (the default) or JSON lines (``ADVISOR_LOG_FORMAT=json``),
each line carrying the job id and, while a span is recorded, the trace and span ids
(:mod:`service.core.tracing`), so a job's lines and its trace find each other."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from service.core import tracing

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLines(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and ``job_id``, ``trace_id``, ``span_id``
    when known (``exc`` with the traceback of an exception)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job = getattr(record, "job_id", None) or tracing.job_id()
        if job:
            line["job_id"] = job
        ids = tracing.ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str, fmt: str) -> None:
    """The root logger at ``level``, writing in ``fmt`` to stderr (each handler it already has is switched to
    ``fmt`` too)."""
    logging.basicConfig(level=level.upper(), format=TEXT_FORMAT)
    use_format(fmt)


def use_format(fmt: str, logger: logging.Logger | None = None) -> None:
    """Switch the handlers of ``logger`` (default: the root) to ``fmt``; text leaves them as they are."""
    if fmt != "json":
        return
    for handler in (logger or logging.getLogger()).handlers:
        handler.setFormatter(JsonLines())
