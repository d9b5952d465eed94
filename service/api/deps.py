"""FastAPI dependencies (``Annotated`` aliases used by the routes).

The ones that neither block nor touch the database are ``async def``: FastAPI runs a sync dependency
in the thread pool, one hop per dependency per request, which under load costs more than the work.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from service.api.errors import ProblemError
from service.core import tracing
from service.core.config import Settings, hash_api_key
from service.core.db import get_sessionmaker
from service.core.queue import BrokerProbe, JobQueue


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_session(settings: SettingsDep) -> Session:
    """A new session (no connection yet: it takes one on its first query, in the route's thread, and
    :class:`~service.api.sessions.ShortSessionRoute` closes it there when the route returns)."""
    return get_sessionmaker(settings.db_url)()


SessionDep = Annotated[Session, Depends(get_session)]


OWNER_STATE = "advisor_owner"
"""Where :class:`~service.api.limits.RateGate` leaves the identity it checked (``scope["state"]``)."""


async def get_owner(
    request: Request,
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header(description="API key (when the server requires keys).")] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> str:
    """The caller's identity: the SHA-256 of its API key, or "" when the server has no keys (as the rate gate
    found it, when it did)."""
    owner = request.scope.get("state", {}).get(OWNER_STATE)
    if owner is None:
        owner = owner_of(settings, x_api_key, authorization)
    tracing.annotate(owner=owner)  # a prefix of the hash on the request's span, never the key
    return owner


def owner_of(settings: Settings, x_api_key: str | None, authorization: str | None) -> str:
    """What :func:`get_owner` answers; 401 problem without a valid key when the server has keys."""
    hashes = settings.api_key_hashes
    if not hashes:
        return ""
    key = x_api_key
    if not key and authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    if not key:
        raise ProblemError(
            401,
            "An API key is required: send it in `X-API-Key` or `Authorization: Bearer`.",
            slug="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )
    digest = hash_api_key(key)
    if not any(hmac.compare_digest(digest, h) for h in hashes):
        raise ProblemError(
            401, "The API key is not valid.", slug="unauthorized", headers={"WWW-Authenticate": "Bearer"}
        )
    return digest


OwnerDep = Annotated[str, Depends(get_owner)]


async def get_operator(
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header(description="API key (when the server requires keys).")] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> bool:
    """Whether the caller may see operational details (``/metrics``, the checks of ``/readyz``): with a
    valid key, or when ``ADVISOR_METRICS_PUBLIC`` is set, or when the server has no keys at all."""
    if settings.metrics_public or not settings.api_key_hashes:
        return True
    try:
        owner_of(settings, x_api_key, authorization)
    except ProblemError:
        return False
    return True


OperatorDep = Annotated[bool, Depends(get_operator)]


async def get_queue(request: Request) -> JobQueue:
    return request.app.state.queue


QueueDep = Annotated[JobQueue, Depends(get_queue)]


async def get_probe(request: Request) -> BrokerProbe | None:
    return request.app.state.probe


ProbeDep = Annotated[BrokerProbe | None, Depends(get_probe)]
