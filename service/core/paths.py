"""Confining a job's file paths (dataset and weights) to the configured data roots.

The service runs jobs for callers who do not own the machine, so a path in a job may only name a
regular file or directory under one of ``Settings.allowed_roots``. The engine's own CLI
(``advisor analyze``) is the user's machine and stays unconfined: only the service calls this.

The API checks at submission and the worker again just before it opens anything
(:func:`path_problem` at both ends), so a symlink swapped or a root removed in between is refused too.

Outside the roots every path gets the same reason, :data:`OUTSIDE`, whether it exists or not, so the
answer tells nothing about the server's filesystem.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from redundancy.config import AnalysisConfig
from redundancy.datasets.registry import parse_spec
from service.core.uploads import upload_id

SPECIAL_WEIGHTS: tuple[str, ...] = ("hub", "bundled", "random")  # `model.weights` values that are no path
OUTSIDE = "not under an allowed root"
PATH_NOT_ALLOWED = "path_not_allowed"  # the error code, at submission (422) and in a failed job
MAX_COMPONENT_BYTES = 255  # NAME_MAX on Linux file systems


def confinement_error(raw: str, roots: Sequence[Path]) -> str | None:
    """Why ``raw`` may not be used (a sentence), or None when it resolves under one of ``roots`` and
    names nothing but a regular file, a directory, or nothing yet.

    Rules, in order: absolute (after ``~``), no ``..`` component, no component over 255 bytes, the
    fully resolved path (every symlink followed) under a resolved root, and, if it exists, not a
    device, FIFO or socket.
    """
    if "\x00" in raw:
        return "contains a NUL byte"
    parts = PurePosixPath(raw).parts
    if ".." in parts:
        return "`..` is not allowed in a path"
    if any(len(p.encode()) > MAX_COMPONENT_BYTES for p in parts):
        return f"a path component is longer than {MAX_COMPONENT_BYTES} bytes"
    path = Path(raw).expanduser()
    if not path.is_absolute():
        return OUTSIDE
    try:
        resolved = Path(os.path.realpath(path))
    except (OSError, ValueError):
        return OUTSIDE
    if not any(resolved.is_relative_to(root) for root in roots):
        return OUTSIDE
    try:
        mode = os.stat(resolved).st_mode
    except OSError:
        return None  # inside a root and not there (yet): the job fails with the engine's not-found error
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "not a regular file or directory"
    return None


def path_problem(config: AnalysisConfig, roots: Sequence[Path]) -> tuple[str, str] | None:
    """``(field, reason)`` for the first path of ``config`` (the dataset's, then the weights') that
    :func:`confinement_error` refuses, or None when every path is allowed. An uploaded dataset
    (``upload:<id>``) names no path: the worker reads the store's own file (:mod:`service.core.uploads`)."""
    arg = "" if upload_id(config.dataset.spec) is not None else parse_spec(config.dataset.spec)[1]
    if arg:
        reason = confinement_error(arg, roots)
        if reason:
            return "dataset.spec", reason
    if config.model.weights not in SPECIAL_WEIGHTS:
        reason = confinement_error(config.model.weights, roots)
        if reason:
            return "model.weights", reason
    return None
