"""A page of jobs (``GET /v1/jobs``) as JSON bytes, each job rendered once per version of its row.

The list is read from the database on every request (it is not cached: statuses and progress move), but a
job's JSON is a function of its row alone: :meth:`JobOut.of` reads nothing else. So the rows come as plain
tuples of every column, the JSON columns as their text (:func:`service.core.queries.list_job_rows`), and a
row seen before, column for column, gets the bytes rendered for it then; a row that changed in any column
(progress, stage, status, …) is a different key and is rendered anew. The page is the rendered jobs joined
in the envelope of :class:`JobList`, byte for byte what ``JobList(...).model_dump_json(by_alias=True)`` gives
(tested against it: ``tests/service/test_service_job_pages.py``).

What it saves, per page of 20 jobs (Intel Xeon, one thread, Postgres on the same machine): decoding the
JSON columns, building 20 ``JobOut`` models and dumping them, 2.0 → 1.25 ms of CPU for the whole read
(``docs/operations.md``, the list's p99 at 100 clients).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from pydantic import TypeAdapter

from service.api.schemas import JobOut
from service.core.models import Job
from service.core.queries import JSON_COLUMNS

MAX_ROWS = 4096
"""Rendered rows kept (least recently used first out): a few pages for each of many keys (~4 KB each)."""

_TOKEN = TypeAdapter(str | None)


def job_of_row(row: Any) -> Job:
    """A detached :class:`Job` with the row's values, its JSON columns decoded."""
    values = row._asdict()
    for name in JSON_COLUMNS:
        if values[name] is not None:
            values[name] = json.loads(values[name])
    return Job(**values)


class JobPages:
    """Renders pages; thread-safe (routes build pages in worker threads)."""

    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self.max_rows = max_rows
        self._rendered: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rendered)

    def job(self, row: Any) -> bytes:
        """One job's JSON (``JobOut.of(job).model_dump_json(by_alias=True)``)."""
        key = tuple(row)
        with self._lock:
            body = self._rendered.get(key)
            if body is not None:
                self._rendered.move_to_end(key)
                return body
        body = JobOut.of(job_of_row(row)).model_dump_json(by_alias=True).encode()
        with self._lock:
            self._rendered[key] = body
            while len(self._rendered) > self.max_rows:
                self._rendered.popitem(last=False)
        return body

    def page(self, rows: list[Any], next_page_token: str | None) -> bytes:
        """The page's JSON: :class:`~service.api.schemas.JobList`'s ``items`` and ``next_page_token``."""
        items = b",".join(self.job(r) for r in rows)
        return b'{"items":[' + items + b'],"next_page_token":' + _TOKEN.dump_json(next_page_token) + b"}"
