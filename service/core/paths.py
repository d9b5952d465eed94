"""Confining a job's file paths (dataset and weights) to the configured data roots.

The service runs jobs for callers who do not own the machine, so a path in a job may only name an
existing regular file or directory under one of ``Settings.allowed_roots``. The engine's own CLI
(``advisor analyze``) is the user's machine and stays unconfined: only the service calls this.

The API checks at submission and the worker again just before it opens anything
(:func:`path_problems` at both ends), so a symlink swapped or a root removed in between is refused too.

Every refusal names the offending path and says what is wrong with it: relative (it must be
absolute), outside the roots (which it lists, when the server shows them, and names
``ADVISOR_DATA_ROOTS``, the setting that sets them) or missing under a root. Outside the roots every
path gets the same sentence whether it exists or not, so the answer tells nothing about the
server's filesystem beyond the roots themselves.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from redundancy.config import AnalysisConfig
from redundancy.errors import DatasetNotFoundError, RedundancyError, WeightsNotFoundError
from redundancy.preflight import SPECIAL_WEIGHTS, Problem
from redundancy.sources.datasets.registry import parse_spec
from redundancy.sources.encoders.hf import hf_local_dir
from service.core.uploads import upload_id

OUTSIDE = "not under an allowed root"  # how every refusal outside the roots begins
ROOTS_SETTING = "ADVISOR_DATA_ROOTS"
PATH_NOT_ALLOWED = "path_not_allowed"  # the error code, at submission (422) and in a failed job
MAX_COMPONENT_BYTES = 255  # NAME_MAX on Linux file systems


def where_roots(roots: Sequence[Path], show_roots: bool) -> str:
    """The clause that tells a caller where paths may point: the roots (when shown) and the setting."""
    if show_roots:
        return f"allowed roots: {', '.join(map(str, roots))} (the server's {ROOTS_SETTING})"
    return f"the allowed roots are the server's {ROOTS_SETTING}"


def confinement_error(
    raw: str, roots: Sequence[Path], *, show_roots: bool = True, must_exist: bool = False
) -> str | None:
    """Why ``raw`` may not be used (a sentence naming it), or None when it resolves under one of
    ``roots`` and names a regular file or directory (or nothing yet, unless ``must_exist``).

    Rules, in order: absolute (after ``~``), no ``..`` component, no component over 255 bytes, the
    fully resolved path (every symlink followed) under a resolved root, and, if it exists, not a
    device, FIFO or socket.
    """
    if "\x00" in raw:
        return "contains a NUL byte"
    shown = repr(raw)
    parts = PurePosixPath(raw).parts
    if ".." in parts:
        return f"{shown}: `..` is not allowed in a path"
    if any(len(p.encode()) > MAX_COMPONENT_BYTES for p in parts):
        return f"{shown}: a path component is longer than {MAX_COMPONENT_BYTES} bytes"
    path = Path(raw).expanduser()
    outside = f"{OUTSIDE}: {shown}; {where_roots(roots, show_roots)}"
    if not path.is_absolute():
        return f"{OUTSIDE}: {shown} is relative; it must be an absolute path; {where_roots(roots, show_roots)}"
    try:
        resolved = Path(os.path.realpath(path))
    except (OSError, ValueError):
        return outside
    if not any(resolved.is_relative_to(root) for root in roots):
        return outside
    try:
        mode = os.stat(resolved).st_mode
    except OSError:
        return f"{shown} does not exist" if must_exist else None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return f"{shown} is not a regular file or directory"
    return None


def path_problems(
    dataset_spec: object, weights: object, roots: Sequence[Path], *, show_roots: bool = True,
    model_name: object = None,
) -> list[Problem]:
    """Every path of a (raw) request that may not be used: the dataset's, an `hf:/dir` model's directory,
    then the weights'. A value that is not a string, or a spec that does not parse, is left to the other
    checks."""
    out: list[Problem] = []
    arg = ""
    if isinstance(dataset_spec, str) and upload_id(dataset_spec) is None:  # an upload names no path: the
        try:  # worker reads the store's own file (service.core.uploads)
            _scheme, arg = parse_spec(dataset_spec)
        except RedundancyError:
            arg = ""
    candidates = [("dataset.spec", arg, DatasetNotFoundError.code)]
    local_model = hf_local_dir(model_name) if isinstance(model_name, str) and model_name.startswith("hf:") else None
    if local_model is not None:
        candidates.append(("model.name", str(local_model), "model_not_found"))
    if isinstance(weights, str) and weights and weights not in SPECIAL_WEIGHTS:
        candidates.append(("model.weights", weights, WeightsNotFoundError.code))
    for field, raw, missing_code in candidates:
        if not raw:
            continue
        reason = confinement_error(raw, roots, show_roots=show_roots, must_exist=True)
        if reason:
            code = missing_code if reason.endswith("does not exist") else PATH_NOT_ALLOWED
            out.append(Problem(field, reason, code))
    return out


def path_problem(config: AnalysisConfig, roots: Sequence[Path], *, show_roots: bool = True) -> Problem | None:
    """The first of :func:`path_problems` for a validated config, or None when every path is allowed."""
    problems = path_problems(config.dataset.spec, config.model.weights, roots, show_roots=show_roots,
                             model_name=config.model.name)
    return problems[0] if problems else None
