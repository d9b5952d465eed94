"""One span per HTTP request (:mod:`service.core.tracing`; nothing at all when tracing is off).

Pure ASGI, like :class:`service.api.metrics.RequestTiming`: a request costs no extra task. The span
continues a caller's ``traceparent`` if it sends one, is current while the route runs (so the route, its
dependencies and the job it submits add to it: the hashed owner, the job id), and is named after the route
template once the router has matched it (``POST /v1/jobs``)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core import tracing


class RequestSpans:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing.enabled():
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())
                   if k in (b"traceparent", b"tracestate", b"baggage")}
        method = scope["method"]
        with tracing.span(f"HTTP {method}", kind="server", parent=tracing.extract(headers),
                          **{"http.request.method": method, "url.path": scope.get("path", "")}) as span:

            async def send_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_status)
            finally:
                route = getattr(scope.get("route"), "path", None)  # set by the router
                if route:
                    span.set_attribute("http.route", route)
                    span.update_name(f"HTTP {method} {route}")
                job_id = (scope.get("path_params") or {}).get("job_id")
                if job_id:
                    span.set_attribute("advisor.job_id", str(job_id))
