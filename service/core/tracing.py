"""OpenTelemetry traces, an optional extra (``pip install '.[otel]'``): one trace per job, from the request
through the broker into the worker's stages.

Every function here does nothing when the extra is not installed or no endpoint is configured
(``ADVISOR_OTEL_ENDPOINT``, or the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``): no import error, no span, an empty carrier.

Spans (their names): ``HTTP <method> <route>`` (``service.api.traces``), ``enqueue``
(``service.celery_queue``, which also puts the context in every message sent), ``task <name>``
(``workers.traced``), one span per engine stage (:class:`StageSpans`, fed by the worker's progress
monitor: ``load_model``, ``load_data``, ``extract``, ``probe``, ``advise``) and ``store`` (the worker
writing the result). The context crosses processes in the Celery message's headers (W3C ``traceparent``:
:func:`inject`, :func:`extract`) and threads as an object (:func:`current`, :func:`attached`); the submitting
request's context is kept with the job (``jobs.trace_context``), and every send of the job's message runs in it
(:func:`continued`), so a job re-sent by the maintenance sweep stays in its one trace. Attributes:
``advisor.job_id`` and ``advisor.owner``, the first 12 hex digits of the SHA-256 of the caller's API key
(the owner the database keeps), never the key.
No auto-instrumentation package: four hand-written spans need three small dependencies and no monkey-patching.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from service.core.config import Settings

try:  # the `otel` extra
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # not installed: every function below is a no-op
    trace = None  # type: ignore[assignment]

log = logging.getLogger("service.tracing")

SERVICE_NAME = "redundancy-advisor"
OWNER_PREFIX = 12  # hex digits of the owner's SHA-256 kept on a span
TRACES_PATH = "/v1/traces"

_tracer: Any = None  # set by setup() or install(); None: tracing is off
_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("advisor_job_id", default=None)
_carried: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("advisor_carried", default=None)


def available() -> bool:
    """The ``otel`` extra is installed."""
    return trace is not None


def enabled() -> bool:
    return _tracer is not None


def endpoint(settings: Settings) -> str | None:
    """Where spans go: ``ADVISOR_OTEL_ENDPOINT`` (a base URL; ``/v1/traces`` is added) or the standard
    variables, which the exporter reads itself; None: nowhere, tracing stays off."""
    if settings.otel_endpoint:
        base = settings.otel_endpoint.rstrip("/")
        return base if base.endswith(TRACES_PATH) else base + TRACES_PATH
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")


def setup(settings: Settings, component: str) -> bool:
    """Start exporting this process's spans by OTLP/HTTP when the extra is installed and an endpoint is
    configured (idempotent); True when tracing is on. ``component``: ``api`` or ``worker``."""
    if _tracer is not None:
        return True
    url = endpoint(settings)
    if trace is None or not url:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # lazy: only a traced process
        OTLPSpanExporter,
    )
    from opentelemetry.sdk.resources import Resource  # lazy: only a traced process loads the SDK
    from opentelemetry.sdk.trace import TracerProvider  # lazy: only a traced process loads the SDK
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # lazy: only a traced process loads the SDK

    name = os.environ.get("OTEL_SERVICE_NAME", SERVICE_NAME)
    provider = TracerProvider(resource=Resource.create({"service.name": name, "advisor.component": component}))
    exporter = OTLPSpanExporter(endpoint=url) if settings.otel_endpoint else OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    install(provider)
    log.info("traces exported to %s", url)
    return True


def install(provider: Any) -> None:
    """Trace through ``provider`` (an SDK ``TracerProvider``; tests pass one with an in-memory exporter);
    None turns tracing off again."""
    global _tracer
    _tracer = provider.get_tracer(SERVICE_NAME) if provider is not None else None


def owner_tag(owner: str) -> str:
    """What a span says of the caller: a prefix of its key's SHA-256 (``owner`` is that digest, as
    ``service.api.deps.get_owner`` answers), ``anonymous`` on a server without keys."""
    return owner[:OWNER_PREFIX] if owner else "anonymous"


def _attributes(job_id: str | None = None, owner: str | None = None, **more: Any) -> dict[str, Any]:
    out = {k: v for k, v in more.items() if v is not None}
    if job_id is not None:
        out["advisor.job_id"] = job_id
    if owner is not None:
        out["advisor.owner"] = owner_tag(owner)
    return out


@contextlib.contextmanager
def span(
    name: str, *, kind: str = "internal", parent: Any = None, job_id: str | None = None, **attributes: Any
) -> Iterator[Any]:
    """A span around the block, current inside it (child of ``parent``, a context from :func:`extract` or
    :func:`current`, else of the current span); an exception is recorded and re-raised. ``job_id`` is also
    the job id every log line of the block carries (:func:`job_id`). Yields the span, or None when off."""
    token = _job_id.set(job_id) if job_id is not None else None
    try:
        if _tracer is None:
            yield None
            return
        with _tracer.start_as_current_span(name, context=parent, kind=getattr(SpanKind, kind.upper()),
                                           attributes=_attributes(job_id, **attributes)) as s:
            yield s
    finally:
        if token is not None:
            _job_id.reset(token)


def annotate(*, job_id: str | None = None, owner: str | None = None) -> None:
    """Add the job id and/or the hashed owner to the current span (the request's, in a route)."""
    if _tracer is not None:
        trace.get_current_span().set_attributes(_attributes(job_id, owner))


def inject() -> dict[str, str]:
    """The current trace context as message headers (``traceparent``...). Off: the headers :func:`continued`
    passes on as they are (a job's stored context re-sent by an untraced process), else empty."""
    carrier: dict[str, str] = {}
    if _tracer is not None:
        propagate.inject(carrier)
        return carrier
    return dict(_carried.get() or {})


def extract(headers: Mapping[str, Any]) -> Any:
    """The trace context ``headers`` carry (a request's or a message's), for :func:`span`'s ``parent``."""
    if _tracer is None:
        return None
    return propagate.extract({k: v for k, v in headers.items() if isinstance(v, str)})


def fields() -> set[str]:
    """The header names :func:`inject` may write."""
    return set(propagate.get_global_textmap().fields) if trace is not None else set()


def current() -> Any:
    """This thread's trace context, to continue it in another thread (:func:`attached`)."""
    return otel_context.get_current() if _tracer is not None else None


@contextlib.contextmanager
def attached(ctx: Any) -> Iterator[None]:
    """Run the block inside ``ctx`` (from :func:`current`; None: as is)."""
    if ctx is None or trace is None:
        yield
        return
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


@contextlib.contextmanager
def continued(carrier: Mapping[str, Any] | None) -> Iterator[None]:
    """Run the block in the trace ``carrier`` names (W3C headers as :func:`inject` wrote them, e.g. a job's
    stored submission context); as is when it is empty. Where tracing is off (a prefork worker's main process
    re-sending jobs at start), a message sent in the block still carries ``carrier`` itself, so a traced worker
    continues the job's trace from the request's span."""
    token = _carried.set({k: v for k, v in carrier.items() if isinstance(v, str)} if carrier else None)
    try:
        with attached(extract(carrier) if carrier else None):
            yield
    finally:
        _carried.reset(token)


def job_id() -> str | None:
    """The job the current block works for (set by :func:`span`), for log lines."""
    return _job_id.get()


def ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, for log lines; None outside a recorded span."""
    if trace is None:
        return None
    sc = trace.get_current_span().get_span_context()
    if not sc.is_valid:
        return None
    return format(sc.trace_id, "032x"), format(sc.span_id, "016x")


class StageSpans:
    """One span per engine stage, children of the span current where this was made (the task's), started
    and ended from any thread: :meth:`enter` ends the previous stage's span and starts the next one's,
    :meth:`close` ends the last (with the error that stopped it, if any)."""

    def __init__(self, job_id: str | None = None) -> None:
        self.parent, self.job_id = current(), job_id
        self._open: Any = None

    def enter(self, stage: str) -> None:
        if _tracer is None:
            return
        self.close()
        self._open = _tracer.start_span(stage, context=self.parent, attributes=_attributes(self.job_id))

    def close(self, error: BaseException | None = None) -> None:
        s, self._open = self._open, None
        if s is None:
            return
        if error is not None:
            s.record_exception(error)
            s.set_status(Status(StatusCode.ERROR, type(error).__name__))
        s.end()
