"""Cheap checks at submit time, beyond the config's own pydantic validation: every bad field at once.

They reuse the engine's own meaning checks (``redundancy.preflight``: a model timm knows, weights that
exist for it, a dataset spec the registry parses) and the core's path rule (``service.core.paths``),
so the API, the engine's CLI and the worker agree. A body that fails its shape validation (pydantic)
gets these checks too, on its raw fields (:func:`body_problems`), so one 422 names every bad field.
Anything that cannot be checked cheaply here (a layer name, a dataset's contents) is left to the
engine: the job then fails with its error ``{code, message}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import timm
from fastapi import Request

from redundancy.errors import RedundancyError
from redundancy.preflight import CHECKPOINT_SUFFIXES, Problem, layer_memory_problems, request_problems
from redundancy.sources.datasets.embeddings import Columns, check_embeddings
from redundancy.sources.datasets.registry import parse_spec
from service.api.errors import validation_problems
from service.core.config import Settings
from service.core.mlflow_runs import option_problem
from service.core.paths import path_problems
from service.core.uploads import upload_id
from service.core.webhooks import Allowance, callback_url_problem

__all__ = ["CHECKPOINT_SUFFIXES", "body_problems", "check_config", "config_problems", "is_timm_model"]


def is_timm_model(name: str) -> bool:
    return bool(timm.is_model(name))


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


def config_problems(raw: Mapping[str, Any], settings: Settings) -> list[Problem]:
    """Every meaning problem of a (raw) job body: NUL bytes, model, weights, dataset, paths, then the
    webhook target and the MLflow option; one per field."""
    out = [Problem(field, "contains a NUL byte") for field in nul_fields(dict(raw))]
    model = raw.get("model") if isinstance(raw.get("model"), Mapping) else {}
    dataset = raw.get("dataset") if isinstance(raw.get("dataset"), Mapping) else {}
    uploaded = isinstance(dataset.get("spec"), str) and upload_id(dataset["spec"]) is not None
    # an upload is checked against the caller's own (uploads.check_reference), not parsed as a path
    out += [p for p in request_problems(raw) if not (uploaded and p.field == "dataset.spec")]
    out += path_problems(dataset.get("spec"), model.get("weights", "hub"), settings.allowed_roots,
                         show_roots=settings.show_data_roots, model_name=model.get("name"))
    if not any(p.field == "dataset.spec" for p in out):
        out += embeddings_header_problems(raw)
    if not any(p.field == "model.name" for p in out):
        out += layer_memory_problems(raw, settings.max_layer_stats_bytes)
    url = raw.get("callback_url")
    if isinstance(url, str) and url:
        reason = callback_url_problem(url, Allowance.parse(settings.webhook_allow))
        if reason is not None:
            out.append(Problem("callback_url", reason, "callback_url_refused"))
    mlflow = option_problem(raw.get("mlflow"), settings)
    if mlflow is not None:
        out.append(Problem(*mlflow))
    first: dict[str, Problem] = {}
    for p in out:
        first.setdefault(p.field, p)
    return list(first.values())


def embeddings_header_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """An `embeddings:` file that is already on this server's disk gets its header checked now (shapes,
    dtypes, columns, width); one that is not (yet) is checked by the worker, whose failure says why."""
    dataset = raw.get("dataset") if isinstance(raw.get("dataset"), Mapping) else {}
    spec = dataset.get("spec")
    if not isinstance(spec, str) or not spec.startswith("embeddings:"):
        return []
    try:
        _scheme, arg = parse_spec(spec)
        path = Path(arg).expanduser()
        if not path.is_file() and not path.is_dir():  # a directory: explicit pairs as tables
            return []
        check_embeddings(path, Columns(dataset.get("embedding_column") or "embedding",
                                       dataset.get("label_column") or "label", dataset.get("split_column") or "split"))
    except RedundancyError as exc:
        return [Problem("dataset.spec", exc.message, exc.code)]
    return []


def check_config(body: Any, settings: Settings) -> None:
    """422 naming every bad field of a body that passed its shape validation."""
    problems = config_problems(body.model_dump(mode="json"), settings)
    if problems:
        raise validation_problems([(p.field, p.reason, p.code) for p in problems])


def body_problems(request: Request, raw: Any, named: set[str]) -> list[dict[str, Any]]:
    """For the error handler: the meaning errors of a job submission whose shape is wrong, for the
    fields pydantic did not already name."""
    if request.method != "POST" or request.url.path.rstrip("/") != "/v1/jobs" or not isinstance(raw, Mapping):
        return []
    settings: Settings = request.app.state.settings
    return [
        {"field": p.field, "reason": p.reason, "location": "body", "code": p.code}
        for p in config_problems(raw, settings)
        if not any(p.field == f or p.field.startswith(f + ".") or f.startswith(p.field + ".") for f in named)
    ]
