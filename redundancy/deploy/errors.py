"""Errors of the deployment layer: each names the field at fault, like every engine error."""

from __future__ import annotations

from redundancy.errors import IncompatibleTasksError, RedundancyError

__all__ = ["ArtifactError", "IncompatibleTasksError"]  # the second lives in redundancy.errors (advice raises it)


class ArtifactError(RedundancyError, ValueError):
    """An artifact (or the statistics it is fitted from) is unreadable, corrupted or does not fit."""

    code = "artifact_invalid"
    field = "artifact"

