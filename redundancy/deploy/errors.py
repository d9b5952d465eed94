"""Errors of the deployment layer: each names the field at fault, like every engine error."""

from __future__ import annotations

from redundancy.errors import RedundancyError


class ArtifactError(RedundancyError, ValueError):
    """An artifact (or the statistics it is fitted from) is unreadable, corrupted or does not fit."""

    code = "artifact_invalid"
    field = "artifact"


class IncompatibleTasksError(RedundancyError, ValueError):
    """Curves of several datasets that cannot share one subset (other model, weights, layer or width)."""

    code = "incompatible_tasks"
    field = "dataset"
