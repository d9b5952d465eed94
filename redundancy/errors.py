"""Exceptions raised by the engine. Each names the problem and, where there is one, the field."""

from __future__ import annotations


class RedundancyError(Exception):
    """Base class: every error the engine raises on purpose derives from it."""

    code = "engine_error"
    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if field is not None:
            self.field = field


class InvalidConfigError(RedundancyError, ValueError):
    code = "invalid_config"


class UnknownModelError(RedundancyError, LookupError):
    code = "unknown_model"
    field = "model.name"


class WeightsNotFoundError(RedundancyError, FileNotFoundError):
    code = "weights_not_found"
    field = "model.weights"


class WeightsUnavailableError(RedundancyError):
    """The weights exist in principle but cannot be fetched here (no internet, no cache)."""

    code = "weights_unavailable"
    field = "model.weights"


class CheckpointMismatchError(RedundancyError, ValueError):
    code = "checkpoint_mismatch"
    field = "model.weights"


class UnknownLayerError(RedundancyError, LookupError):
    code = "unknown_layer"
    field = "layer"


class UnknownDatasetError(RedundancyError, LookupError):
    code = "unknown_dataset"
    field = "dataset.spec"


class DatasetNotFoundError(RedundancyError, FileNotFoundError):
    code = "dataset_not_found"
    field = "dataset.spec"


class PathNotAllowedError(RedundancyError, PermissionError):
    """A file the dataset would open resolves (a symlink followed) outside the roots the run is confined to
    (``Runtime.confine_to``: the service's ``ADVISOR_DATA_ROOTS``)."""

    code = "path_not_allowed"
    field = "dataset.spec"


class DatasetFormatError(RedundancyError, ValueError):
    """The dataset exists but its contents are inconsistent (shapes, lengths, labels)."""

    code = "dataset_format"
    field = "dataset.spec"


class Cancelled(RedundancyError):
    """Raised between steps when the cancellation hook says stop."""

    code = "cancelled"


class FeatureRangeError(RedundancyError, ValueError):
    """Features too large for the storage dtype (float16 tops out at 65,504)."""

    code = "feature_range"
    field = "feature_dtype"


class IncompatibleTasksError(RedundancyError, ValueError):
    """Curves of several datasets that cannot share one subset (other model, weights, layer or width)."""

    code = "incompatible_tasks"
    field = "dataset"


class DeviceUnavailableError(RedundancyError):
    """The job asked for a CUDA device and the process running it has none (a gpu-queue job on a cpu host)."""

    code = "device_unavailable"
    field = "device"
