"""Database sessions that live exactly as long as the route that uses them.

A route asks for a session with ``SessionDep``; the session takes a connection on its first query,
in the route's own thread. :class:`ShortSessionRoute` closes every session the route was given in that
same thread, as the route returns: the connection goes back to the pool before the response is
serialised or sent, never across an ``await`` or a second thread hop (which, when every thread waits
for a connection, is a deadlock: issue 9).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute
from sqlalchemy.orm import Session


def closing_sessions(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` (sync) that closes the sessions among its arguments when it returns or raises."""

    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return endpoint(*args, **kwargs)
        finally:
            for value in (*args, *kwargs.values()):
                if isinstance(value, Session):
                    value.close()

    return run


class ShortSessionRoute(APIRoute):
    """An ``APIRoute`` whose sync endpoint closes its sessions in its own thread."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = closing_sessions(endpoint)
        super().__init__(path, endpoint, **kwargs)
