"""The δ a read of a finished job uses (recommendation, artifact, plot, multi-dataset answer): one rule,
stated once, for every route."""

from __future__ import annotations

from collections.abc import Sequence

from redundancy.config import DEFAULT_DELTAS
from service.core.errors import InvalidInput

DEFAULT_DELTA: float = float(DEFAULT_DELTAS[0])
"""A job that stored no δ (a record from before `deltas` existed) is read at the engine's first default δ."""


def resolve_delta(delta: float | None, job_deltas: Sequence[float] | None = None) -> float:
    """The caller's δ when given, checked to lie in [0, 1) (NaN does not); else the job's first δ
    (``job_deltas``, the job's ``request["deltas"]``), else :data:`DEFAULT_DELTA`. A bad δ raises
    :class:`InvalidInput` naming ``delta``."""
    if delta is None:
        return float(job_deltas[0]) if job_deltas else DEFAULT_DELTA
    if not (0.0 <= delta < 1.0):  # also false for NaN
        raise InvalidInput("delta", f"{delta} is outside [0, 1)")
    return float(delta)
