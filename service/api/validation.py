"""Cheap checks at submit time, beyond the config's own pydantic validation.

They reuse the engine's own parsers (``parse_spec``, ``check_model_name``) so the API and the engine
agree. Anything that cannot be checked cheaply here (a checkpoint on the worker's disk, a layer name,
a dataset's contents) is left to the engine: the job then fails with its error ``{code, message}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import timm

from redundancy.config import AnalysisConfig
from redundancy.datasets.registry import parse_spec
from redundancy.errors import RedundancyError
from redundancy.models.loading import check_model_name
from service.api.errors import validation_problem
from service.core.config import Settings
from service.core.paths import PATH_NOT_ALLOWED, SPECIAL_WEIGHTS, path_problem
from service.core.uploads import upload_id
from service.core.webhooks import Allowance, callback_url_problem

BUNDLED_MODEL = "tf_efficientnet_lite0"
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pth", ".pt", ".bin")


def is_timm_model(name: str) -> bool:
    return bool(timm.is_model(name))


def check_dataset_spec(spec: str) -> None:
    try:
        parse_spec(spec)
    except RedundancyError as exc:
        raise validation_problem("dataset.spec", exc.message, code=exc.code) from exc


def check_model(name: str, weights: str) -> None:
    try:
        check_model_name(name)
    except RedundancyError as exc:
        raise validation_problem("model.name", exc.message, code=exc.code) from exc
    if weights == "bundled" and name != BUNDLED_MODEL:
        raise validation_problem("model.weights", f"bundled weights exist only for {BUNDLED_MODEL}, not {name!r}")
    if weights in SPECIAL_WEIGHTS:
        return
    if not weights.lower().endswith(CHECKPOINT_SUFFIXES):
        raise validation_problem(
            "model.weights",
            "expected hub, bundled, random or a checkpoint path ending in " + ", ".join(CHECKPOINT_SUFFIXES),
        )


def nul_fields(value: Any, prefix: str = "") -> Iterator[str]:
    """Dotted names of the strings in ``value`` (a JSON-like tree) holding a NUL byte, which Postgres
    cannot store and the OS cannot open."""
    if isinstance(value, str):
        if "\x00" in value:
            yield prefix or "body"
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from nul_fields(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from nul_fields(v, f"{prefix}.{i}" if prefix else str(i))


def check_paths(config: AnalysisConfig, roots: Sequence[Path]) -> None:
    """The dataset and weights paths of a job must lie under the server's data roots."""
    problem = path_problem(config, roots)
    if problem:
        raise validation_problem(*problem, code=PATH_NOT_ALLOWED)


def check_config(config: AnalysisConfig, roots: Sequence[Path]) -> None:
    for field in nul_fields(config.model_dump(mode="json")):
        raise validation_problem(field, "contains a NUL byte")
    if upload_id(config.dataset.spec) is None:  # an upload is checked against the caller's (uploads.check_reference)
        check_dataset_spec(config.dataset.spec)
    check_model(config.model.name, config.model.weights)
    check_paths(config, roots)


def check_callback_url(url: str | None, settings: Settings) -> None:
    """A webhook target must be http(s) and resolve to addresses the server allows (public by default)."""
    if url is None:
        return
    problem = callback_url_problem(url, Allowance.parse(settings.webhook_allow))
    if problem is not None:
        raise validation_problem("callback_url", problem, code="callback_url_refused")
