"""Two uploads by one key racing for its last place (the upload quota, issue 19): a rendezvous on
:func:`service.core.uploads.usage`, so that each thread's n-th reading of the key's usage waits (a bounded
time) for the other's n-th. Code that reads the usage and then writes lets both threads read the same
count; code that holds the key's place while it counts makes the second wait behind the first, past the
rendezvous's bound, and count the first's upload."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from service.core import uploads


class Rendezvous:
    """``wait()``: the n-th call of each of ``parties`` threads waits up to ``timeout`` s for the others' n-th."""

    def __init__(self, parties: int = 2, timeout: float = 1.5) -> None:
        self.parties, self.timeout = parties, timeout
        self.cond = threading.Condition()
        self.arrived: defaultdict[int, int] = defaultdict(int)
        self.rounds = threading.local()
        self.waited_out = 0  # rounds a thread left alone, at the bound

    def wait(self) -> None:
        n = getattr(self.rounds, "n", 0)
        self.rounds.n = n + 1
        with self.cond:
            self.arrived[n] += 1
            self.cond.notify_all()
            if not self.cond.wait_for(lambda: self.arrived[n] >= self.parties, timeout=self.timeout):
                self.waited_out += 1


def hook_usage(monkeypatch: pytest.MonkeyPatch, rendezvous: Rendezvous) -> None:
    real: Callable[..., tuple[int, int]] = uploads.usage

    def usage(*args: Any, **kwargs: Any) -> tuple[int, int]:
        out = real(*args, **kwargs)
        rendezvous.wait()
        return out

    monkeypatch.setattr(uploads, "usage", usage)


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run each call in its own thread at once; their results (or the exception each raised), in order."""
    out: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        try:
            out[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 - the caller looks at what each call ended with
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out
