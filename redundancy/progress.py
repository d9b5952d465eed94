"""Where an analysis is: its stages and their weights, the progress events it sends, and the
`Tracker` that times each stage and asks whether to stop. Pure Python: the service and the command
line import it without loading torch."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from redundancy.errors import Cancelled

STAGES: tuple[tuple[str, float], ...] = (
    ("load_model", 0.03),
    ("load_data", 0.02),
    ("extract", 0.65),
    ("probe", 0.28),
    ("advise", 0.02),
)


def stage_overall(stage: str, fraction: float) -> float:
    """Overall progress (0..1) at `fraction` of the way through `stage`, by the stages' weights."""
    start = sum(w for _, w in STAGES[: [n for n, _ in STAGES].index(stage)])
    return min(1.0, start + dict(STAGES)[stage] * fraction)


@dataclass
class ProgressEvent:
    stage: str
    stage_progress: float  # 0..1 within the stage
    overall: float  # 0..1 over the whole analysis
    message: str = ""
    images_done: int | None = None  # extraction only: images through the model so far, of images_total
    images_total: int | None = None


ProgressFn = Callable[[ProgressEvent], None]
StopFn = Callable[[], bool]
ImagesProgressFn = Callable[[int, int], None]  # (images done, images total) of one extraction


@dataclass(frozen=True)
class ImagesProgress:
    """Extraction progress as a job records it: images through the model of `total`, and the
    estimated seconds left (`eta_s`; None before the first image)."""

    done: int
    total: int
    eta_s: float | None


class Tracker:
    """Sends `ProgressEvent`s to `progress`, raises `Cancelled` when `should_stop()` says so, and
    records each stage's seconds in `timings` (`with tracker.stage("probe"): ...`)."""

    def __init__(self, progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> None:
        self.progress, self.should_stop = progress, should_stop
        self.timings: dict[str, float] = {}

    def check(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled("analysis cancelled")

    def report(self, stage: str, fraction: float, message: str = "", images: tuple[int, int] | None = None) -> None:
        if self.progress is not None:
            done, total = images if images is not None else (None, None)
            self.progress(ProgressEvent(stage, fraction, stage_overall(stage, fraction), message, done, total))

    def stage(self, name: str) -> Stage:
        return Stage(self, name)


class Stage:
    """One timed stage: checks for a stop on entry, reports 0 and (on success) 1."""

    def __init__(self, tracker: Tracker, name: str) -> None:
        self.tracker, self.name = tracker, name

    def __enter__(self) -> Stage:
        self.tracker.check()
        self.tracker.report(self.name, 0.0)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.tracker.timings[self.name] = round(time.perf_counter() - self.t0, 4)
        if exc_type is None:
            self.tracker.report(self.name, 1.0)
