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


OCTET_STREAM = "application/octet-stream"


def binary_response(media_type: str, description: str) -> dict[str, Any]:
    """A 200 whose body is a file (PNG, SVG, safetensors...), declared as ``string``/``binary`` under its own
    media type and under ``application/octet-stream`` (what generators such as openapi-python-client turn
    into raw bytes); :func:`negotiate` makes the second one true when a client asks for it."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {"content": {media_type: binary, OCTET_STREAM: binary}, "description": description}


def negotiate(accept: str | None, media_type: str) -> str:
    """``application/octet-stream`` when the ``Accept`` header asks for it and not for ``media_type``."""
    wanted = {part.split(";", 1)[0].strip().lower() for part in (accept or "").split(",")}
    if OCTET_STREAM in wanted and media_type not in wanted and f"{media_type.split('/')[0]}/*" not in wanted:
        return OCTET_STREAM
    return media_type
