"""What makes the OpenAPI document usable by client generators: short, stable operation ids, and binary
responses declared the way generators expect (``type: string, format: binary``)."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute

OPERATION_IDS: dict[str, str] = {
    # route function name → operationId, where camelCasing the name would not read well
    "latest_recommendation": "getLatestRecommendation",
    "models": "listModels",
    "datasets": "listDatasets",
}


def operation_id(route: APIRoute) -> str:
    """``submit_job`` → ``submitJob``; exceptions in :data:`OPERATION_IDS`. Stable: a test lists them all."""
    if route.name in OPERATION_IDS:
        return OPERATION_IDS[route.name]
    head, *rest = route.name.split("_")
    return head + "".join(w.capitalize() for w in rest)


def binary_response(media_type: str, description: str) -> dict[str, Any]:
    """A 200 whose body is a file (PNG, SVG, safetensors...): generators give the caller the bytes."""
    return {"content": {media_type: {"schema": {"type": "string", "format": "binary"}}}, "description": description}
