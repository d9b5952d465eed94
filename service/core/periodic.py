"""A round of work repeated in a daemon thread: the maintenance sweep, the webhook sender (API processes) and a
worker's presence beats all run as one."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class Periodic:
    """Runs ``round()`` every ``interval`` seconds in a daemon thread named ``name``: the first after one
    interval, or at once with ``at_once``. A round that raises is logged (``failed``, on ``log``) and the next
    one tries again (e.g. the database away, the schema not migrated yet). :meth:`stop` waits for the round in
    progress at most ``join_timeout`` seconds."""

    def __init__(self, name: str, interval: float, round: Callable[[], object], *, log: logging.Logger,
                 failed: str, at_once: bool = False, join_timeout: float = 5.0) -> None:
        self.interval, self.round, self.log, self.failed = interval, round, log, failed
        self.at_once, self.join_timeout = at_once, join_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.join_timeout)

    def _loop(self) -> None:
        if not self.at_once and self._stop.wait(self.interval):
            return
        while True:
            try:
                self.round()
            except Exception:  # noqa: BLE001 - logged; the next round tries again
                self.log.warning(self.failed, exc_info=True)
            if self._stop.wait(self.interval):
                return
