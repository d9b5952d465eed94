"""Sending a new job's message off the request path.

``POST /v1/jobs`` commits the job as queued and answers 202 at once; :class:`SendLater` hands the job id
to a thread that sends it (claiming the send first, as the maintenance sweep does, so the two never both
send it). A broker that is away or hung (Redis paused, killed) therefore never holds a request, its thread
or its database connection: the send fails in the background (socket timeouts in
:func:`service.core.queue.celery_config`), and the job, still unsent in the database, is sent by the
maintenance sweep once the broker is back. The database, not this thread's memory, is the truth: a
restart loses nothing.
"""

from __future__ import annotations

import logging
import queue as queue_mod
import threading

from service.core.config import Settings
from service.core.maintenance import resend
from service.core.queue import JobQueue

log = logging.getLogger("service.outbox")

BACKLOG = 10_000  # ids waiting in memory; past it they are left to the sweep (they are in the database)


class SendLater:
    """A :class:`JobQueue` whose ``enqueue`` returns at once; a daemon thread sends through ``inner``."""

    defers_send = True  # submission does not mark the job sent: this thread does, when it sends it

    def __init__(self, settings: Settings, inner: JobQueue) -> None:
        self.settings, self.inner = settings, inner
        # a job id; None: stop; an Event: set it when reached (drain). The request's trace needs no passing
        # on: the job keeps it (``trace_context``), and every send of it continues it (resend)
        self._ids: queue_mod.Queue[str | threading.Event | None] = queue_mod.Queue(maxsize=BACKLOG)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.sent = self.failed = self.left_to_sweep = 0

    def enqueue(self, job_id: str) -> None:
        self._start()
        try:
            self._ids.put_nowait(job_id)
        except queue_mod.Full:
            self.left_to_sweep += 1  # committed as queued and unsent: the sweep sends it

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="advisor-send", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._ids.put(None)
            self._thread.join(timeout=timeout)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every id handed in so far was sent or given up (tests)."""
        self._start()
        done = threading.Event()
        self._ids.put(done)
        done.wait(timeout)

    def _loop(self) -> None:
        while True:
            item = self._ids.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            job_id = item
            try:
                ok = resend(self.settings, job_id, 0, self.inner)
            except Exception:  # noqa: BLE001 - e.g. the database is away: the sweep sends it later
                log.warning("could not send job %s now; the sweep will", job_id, exc_info=True)
                ok = False
            if ok:
                self.sent += 1
            else:
                self.failed += 1
                self._give_up_waiting()

    def _give_up_waiting(self) -> None:
        """The broker failed: leave every id waiting here to the sweep rather than try each against a broker
        that is away (each try costs a socket timeout)."""
        while True:
            try:
                item = self._ids.get_nowait()
            except queue_mod.Empty:
                return
            if not isinstance(item, str):
                self._ids.put(item)  # keep the stop request or the marker
                return
            self.left_to_sweep += 1
