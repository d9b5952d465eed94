"""Cheap checks at submit time, beyond the config's own pydantic validation.

Anything that cannot be checked cheaply here (a checkpoint on the worker's disk, a layer name) is left
to the engine: the job then fails with the engine's error ``{code, message, field}``.
"""

from __future__ import annotations

import threading
from functools import lru_cache

from redundancy.config import AnalysisConfig
from service.api.errors import ProblemError

NAMED_DATASETS: tuple[str, ...] = ("digits", "cifar10", "cifar100", "oxford_pets", "flowers102")
DATASET_SCHEMES: tuple[str, ...] = ("npz", "imagefolder")
SPECIAL_WEIGHTS: tuple[str, ...] = ("hub", "bundled", "random")
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")

_timm_lock = threading.Lock()


@lru_cache(maxsize=1)
def _timm():  # type: ignore[no-untyped-def]
    with _timm_lock:
        import timm

        return timm


def warm_up() -> None:
    """Import timm in the background so the first submit is not slow."""
    threading.Thread(target=_timm, name="timm-import", daemon=True).start()


def is_timm_model(name: str) -> bool:
    return bool(_timm().is_model(name))


def _field_error(field: str, reason: str) -> ProblemError:
    return ProblemError(
        422,
        f"Invalid value for `{field}`: {reason}",
        slug="validation-error",
        title="Request validation failed",
        errors=[{"field": field, "reason": reason, "location": "body"}],
    )


def check_dataset_spec(spec: str) -> None:
    if spec in NAMED_DATASETS:
        return
    scheme, sep, rest = spec.partition(":")
    if sep and scheme in DATASET_SCHEMES:
        if not rest.strip():
            raise _field_error("dataset.spec", f"`{scheme}:` needs a path after the colon")
        return
    known = ", ".join([*NAMED_DATASETS, *(s + ":<path>" for s in DATASET_SCHEMES)])
    what = f"unknown dataset scheme {scheme!r}" if sep else f"unknown dataset {spec!r}"
    raise _field_error("dataset.spec", f"{what}; expected one of {known}")


def check_model(name: str, weights: str) -> None:
    if not is_timm_model(name):
        raise _field_error(
            "model.name", f"{name!r} is not a timm model name; see GET /v1/catalog/models?q=<pattern>"
        )
    if weights in SPECIAL_WEIGHTS:
        return
    if not weights.lower().endswith(CHECKPOINT_SUFFIXES):
        raise _field_error(
            "model.weights",
            "expected hub, bundled, random or a checkpoint path ending in " + ", ".join(CHECKPOINT_SUFFIXES),
        )


def check_config(config: AnalysisConfig) -> None:
    check_dataset_spec(config.dataset.spec)
    check_model(config.model.name, config.model.weights)
