"""Which process runs a job, whether it is still alive, and the process guards of embedded mode.

A worker signs its claims and heartbeats with :func:`process_id`: ``host:pid:start:boot``, where
``start`` is the process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22) and
``boot`` the first 8 characters of the kernel's boot id. On the same machine and boot, a job's owner is
*known dead* when no process has that pid any more, or the pid now belongs to a process that started at
another time (pid reuse). On another host, or without ``/proc``, nothing is known: only the stopped
heartbeat tells.

Embedded mode (one data directory, SQLite, a worker subprocess) adds two guards: the worker dies with
the server (:func:`die_with_parent`: ``prctl(PR_SET_PDEATHSIG)`` and a watchdog thread polling the
parent pid), and :class:`DataDirLock` (``fcntl.flock``) keeps a second server or worker off the same
data directory.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO

log = logging.getLogger("service.process")

PR_SET_PDEATHSIG = 1
PARENT_ENV = "ADVISOR_EMBEDDED_PARENT"
"""Set by ``advisor serve`` on its embedded worker: the server's pid, which the worker dies with."""


@lru_cache(maxsize=1)
def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
    except OSError:
        return "noboot"


def start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot; None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # a zombie has finished running
        return None
    return fields[19]  # field 22 of stat; fields[0] is field 3


def process_id() -> str:
    """``host:pid:start:boot`` of this process (computed each call: a forked child is another process)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{start_ticks(pid) or 0}:{boot_id()}"


@dataclass(frozen=True)
class ProcessId:
    host: str
    pid: int
    start: str
    boot: str

    @staticmethod
    def parse(text: str | None) -> ProcessId | None:
        parts = (text or "").rsplit(":", 3)
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        return ProcessId(parts[0], int(parts[1]), parts[2], parts[3])


def known_dead(worker: str | None) -> bool:
    """True only when ``worker`` (a :func:`process_id`) ran on this machine since its last boot and
    that process is gone. False when it is alive, elsewhere, or unknown."""
    owner = ProcessId.parse(worker)
    if owner is None or owner.host != socket.gethostname() or owner.boot != boot_id() or owner.start == "0":
        return False
    return start_ticks(owner.pid) != owner.start


# ---------------------------------------------------------------------------------------------
# embedded mode


def die_with_parent(parent_pid: int, poll: float = 1.0) -> None:
    """Make this process end when ``parent_pid`` does: the kernel's parent-death signal (Linux), and a
    watchdog thread that exits when our parent changes (other systems, or a parent that is a thread)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %s", ctypes.get_errno())
    except (OSError, AttributeError):
        log.info("no prctl here; relying on the watchdog thread")
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll)
            if os.getppid() != parent_pid:
                log.error("the server (pid %s) is gone; this embedded worker exits", parent_pid)
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


class AlreadyRunning(RuntimeError):
    """Another process holds the data directory's lock."""


_held: list[DataDirLock] = []  # a lock lives as long as its open file: keep it until the process ends


class DataDirLock:
    """An exclusive ``fcntl.flock`` on ``<data dir>/<name>.lock``, held for the life of the process (the
    kernel releases it when the process dies, however it dies). The file says who holds it."""

    def __init__(self, data_dir: Path, name: str) -> None:
        self.path = data_dir / f"{name}.lock"
        self._fh: IO[str] | None = None

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "another process"
        except OSError:
            return "another process"

    def acquire(self, wait: float = 0.0) -> DataDirLock:
        """Take the lock, retrying for ``wait`` seconds; :class:`AlreadyRunning` if it stays held."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held open for the life of the process
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.close()
                    raise AlreadyRunning(
                        f"{self.path.parent} is in use by {self.holder()} (lock {self.path}); stop it first "
                        f"or use another --data-dir"
                    ) from None
                time.sleep(0.2)
        fh.seek(0)
        fh.truncate()
        fh.write(process_id() + "\n")
        fh.flush()
        self._fh = fh
        _held.append(self)
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
            _held.remove(self)
