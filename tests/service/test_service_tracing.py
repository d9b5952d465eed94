"""Traces (issue 23 item 4): one trace per job across the API, the broker and the worker; a no-op without
the `otel` extra or an endpoint; JSON log lines with the job id and trace id.

The end-to-end test runs a real Celery worker (solo pool, in a thread of this process) on kombu's in-memory
broker, so the trace context really travels in a Celery message's headers, and both sides' spans land in one
in-memory exporter. The engine is the fake one (tests/service/conftest.py)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import importlib.util
import json
import logging
import os
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from celery.contrib.testing.worker import start_worker
from celery.signals import after_setup_logger
from fastapi.testclient import TestClient

from service.celery_queue import CeleryJobQueue
from service.core import tracing
from service.core.config import Settings, get_settings
from service.core.db import session_scope
from service.core.logs import JsonLines
from service.core.maintenance import run_maintenance_once
from service.core.models import Job
from service.core.outbox import SendLater
from service.core.queue import device_queues
from service.main import create_app
from tests.service.conftest import FakeEngine, small_job
from workers import celery_app, tasks
from workers.runner import execute_job
from workers.traced import message_headers

KEY = "tracing-test-key-0123456789"


@pytest.fixture
def spans() -> Iterator[Any]:
    """Tracing on, into an in-memory exporter (skips without the `otel` extra); off again afterwards."""
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.install(None)




def _tasks_run_fake_jobs(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """The Celery tasks read ``settings``, never shard, and run the fake engine."""
    monkeypatch.setitem(celery_app.app.conf, "advisor_settings", settings)
    monkeypatch.setattr(tasks, "_plan", lambda *_: False)
    monkeypatch.setattr(tasks, "execute_job", functools.partial(execute_job, analyze=FakeEngine()))

def _post(client) -> str:  # noqa: ANN001
    """POST a small job with the test's key (202); its id."""
    r = client.post("/v1/jobs", json=small_job(), headers={"X-API-Key": KEY})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _finished(client, job_id: str, timeout: float = 60.0) -> str:  # noqa: ANN001
    """The job's status once it is succeeded or failed (or its status at the timeout)."""
    deadline = time.monotonic() + timeout
    while (status := client.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": KEY}).json()["status"]) not in (
            "succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    return status


def test_one_job_is_one_trace_from_the_request_through_the_broker_into_the_worker_stages(
    spans: Any, tmp_path: Path, settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_factory(tmp_path, broker_url="memory://", result_backend_url="cache+memory://",
                                api_keys=KEY, queue=f"traced-{tmp_path.name}")
    _tasks_run_fake_jobs(monkeypatch, settings)
    celery = celery_app.make_celery(settings)
    queue = SendLater(settings, CeleryJobQueue(celery, settings.queue))  # the API's path: a send thread
    app = create_app(settings, queue=queue, maintenance=False)
    with start_worker(celery, pool="solo", perform_ping_check=False, queues=device_queues(settings.queue)), \
            TestClient(app) as client:
        job_id = _post(client)
        assert _finished(client, job_id) == "succeeded"
    queue.stop()

    finished = spans.get_finished_spans()
    post = next(s for s in finished if s.name == "HTTP POST /v1/jobs")
    trace_id = post.context.trace_id
    job_spans = {s.name: s for s in finished if s.context.trace_id == trace_id}
    for name in ("enqueue", "task advisor.run_job", "load_model", "load_data", "extract", "probe", "advise",
                 "store"):
        assert name in job_spans, f"{name} is not in the job's trace: {sorted(job_spans)}"
    # the parent chain: request → enqueue (another thread) → task (across the broker) → stages and store
    assert job_spans["enqueue"].parent.span_id == post.context.span_id
    task = job_spans["task advisor.run_job"]
    assert task.parent.span_id == job_spans["enqueue"].context.span_id
    for stage in ("extract", "probe", "advise", "store"):
        assert job_spans[stage].parent.span_id == task.context.span_id
    for name in ("enqueue", "task advisor.run_job", "extract", "store"):
        assert job_spans[name].attributes["advisor.job_id"] == job_id
    assert post.attributes["advisor.job_id"] == job_id
    assert post.attributes["advisor.owner"] == hashlib.sha256(KEY.encode()).hexdigest()[:12]
    every_value = json.dumps([dict(s.attributes or {}) for s in finished], default=str)
    assert KEY not in every_value  # never the key itself
    # the polls are requests of their own, with their own traces, naming the job they read
    polls = [s for s in finished if s.name == "HTTP GET /v1/jobs/{job_id}"]
    assert polls and all(s.context.trace_id != trace_id and s.attributes["advisor.job_id"] == job_id for s in polls)


class LosesTheFirstMessage:
    """The broker loses the first message sent through it (a Redis flushed, a queue purged)."""

    def __init__(self, inner: CeleryJobQueue) -> None:
        self.inner, self.lost = inner, 0

    def enqueue(self, job_id: str) -> None:
        self.enqueue_to(job_id, None)

    def enqueue_to(self, job_id: str, route: str | None) -> None:
        if self.lost == 0:
            self.lost += 1
            return
        self.inner.enqueue_to(job_id, route)


def test_a_job_resent_by_the_sweep_stays_in_the_trace_of_its_post(
    spans: Any, tmp_path: Path, settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The POST's message is lost; the maintenance sweep (a thread with no trace of its own, here the test's)
    re-sends the job, and the worker's task and stage spans join the trace the POST started."""
    settings = settings_factory(tmp_path, broker_url="memory://", result_backend_url="cache+memory://",
                                api_keys=KEY, queue=f"resent-{tmp_path.name}", requeue_after=0.2)
    _tasks_run_fake_jobs(monkeypatch, settings)
    celery = celery_app.make_celery(settings)
    broker = CeleryJobQueue(celery, settings.queue)
    lossy = LosesTheFirstMessage(broker)
    queue = SendLater(settings, lossy)
    app = create_app(settings, queue=queue, maintenance=False)
    with start_worker(celery, pool="solo", perform_ping_check=False, queues=device_queues(settings.queue)), \
            TestClient(app) as client:
        job_id = _post(client)
        queue.drain()
        assert lossy.lost == 1 and queue.sent == 1  # marked sent, and gone
        time.sleep(0.3)  # past requeue_after: the sweep takes the message for lost
        assert tracing.ids() is None  # no span current here: the sweep's thread has no trace of its own
        assert run_maintenance_once(settings, broker)["requeued"] == 1
        assert _finished(client, job_id) == "succeeded"
    queue.stop()

    finished = spans.get_finished_spans()
    post = next(s for s in finished if s.name == "HTTP POST /v1/jobs")
    (task,) = [s for s in finished if s.name == "task advisor.run_job"]
    assert task.context.trace_id == post.context.trace_id, "the re-sent job's task started a trace of its own"
    (enqueue,) = [s for s in finished if s.name == "enqueue"]  # the sweep's: the lost send never reached Celery
    assert enqueue.parent.span_id == post.context.span_id and task.parent.span_id == enqueue.context.span_id
    for stage in ("extract", "probe", "advise", "store"):
        (span,) = [s for s in finished if s.name == stage]
        assert span.context.trace_id == post.context.trace_id and span.parent.span_id == task.context.span_id
    with session_scope(settings.db_url) as s:
        stored = s.scalar(sa.select(Job.trace_context).where(Job.id == job_id))
    assert stored["traceparent"].split("-")[1:3] == [format(post.context.trace_id, "032x"),
                                                      format(post.context.span_id, "016x")]


def test_an_untraced_sender_passes_a_jobs_stored_context_on_as_is(
    tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    """Tracing off where the job is re-sent (a prefork worker's main process sweeps at start; only its children
    trace): the message still carries the job's stored context, so a traced worker continues the POST's trace."""
    from redundancy.config import AnalysisConfig
    from service.celery_queue import carry_trace
    from service.core import lifecycle
    from service.core.maintenance import resend

    assert not tracing.enabled()
    settings = settings_factory(tmp_path)
    carrier = {"traceparent": "00-" + "a1" * 16 + "-" + "b2" * 8 + "-01"}
    with session_scope(settings.db_url) as s:
        job, _ = lifecycle.create(s, AnalysisConfig.model_validate(small_job()), owner="", idempotency_key=None,
                                  trace_context=carrier)

    class Publishing:  # what Celery does on send: before_task_publish with the message's headers
        def __init__(self) -> None:
            self.headers: list[dict[str, Any]] = []

        def enqueue(self, job_id: str) -> None:
            headers: dict[str, Any] = {}
            carry_trace(headers=headers)
            self.headers.append(headers)

    queue = Publishing()
    assert resend(settings, job.id, None, queue)
    assert queue.headers == [carrier]
    queue.enqueue("another")  # outside a job's send: nothing
    assert queue.headers[-1] == {}


def test_an_untraced_job_keeps_no_trace_context(harness: Any, job_body: Callable[..., dict[str, Any]]) -> None:
    job = harness.submit(job_body())
    with session_scope(harness.settings.db_url) as s:
        assert s.scalar(sa.select(Job.trace_context).where(Job.id == job["id"])) is None


def test_the_message_carries_the_context_and_the_task_continues_it(spans: Any) -> None:
    with tracing.span("request") as outer:
        carrier = tracing.inject()
    assert set(carrier) >= {"traceparent"}

    class Request:  # what Celery's task request looks like for a protocol-2 message with our headers
        id = "m1"
        headers = None
        traceparent = carrier["traceparent"]

    with tracing.span("task", parent=tracing.extract(message_headers(Request()))) as inner:
        pass
    assert inner.context.trace_id == outer.context.trace_id
    assert inner.parent.span_id == outer.context.span_id


def test_stage_spans_end_one_another_and_record_the_error(spans: Any) -> None:
    with tracing.span("task", job_id="j1") as task:
        stages = tracing.StageSpans("j1")
    stages.enter("extract")
    stages.enter("probe")
    stages.close(RuntimeError("disk on fire"))
    stages.close()  # twice: nothing more
    got = {s.name: s for s in spans.get_finished_spans()}
    assert got["extract"].parent.span_id == task.context.span_id == got["probe"].parent.span_id
    assert got["extract"].status.is_ok and not got["probe"].status.is_ok
    assert [e.name for e in got["probe"].events] == ["exception"]
    assert len(spans.get_finished_spans()) == 3


def test_json_log_lines_carry_the_job_id_and_the_trace_id(spans: Any) -> None:
    logger = logging.getLogger("tests.tracing")
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "job %s ran", ("j7",), None)
    with tracing.span("task", job_id="j7") as s:
        line = json.loads(JsonLines().format(record))
    assert line["job_id"] == "j7" and line["message"] == "job j7 ran" and line["level"] == "INFO"
    assert line["trace_id"] == format(s.context.trace_id, "032x")
    assert line["span_id"] == format(s.context.span_id, "016x")
    outside = json.loads(JsonLines().format(record))
    assert "trace_id" not in outside and "job_id" not in outside


def test_unconfigured_tracing_is_a_no_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(data_dir=tmp_path)
    assert tracing.endpoint(settings) is None
    assert tracing.setup(settings, "api") is False and not tracing.enabled()
    with tracing.span("nothing", job_id="j1") as s:
        assert s is None and tracing.job_id() == "j1"  # the job id still reaches log lines
        assert tracing.inject() == {} and tracing.current() is None
    assert tracing.extract({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}) is None
    stages = tracing.StageSpans("j1")
    stages.enter("extract")
    stages.close()


def test_the_endpoint_setting_names_the_traces_path(tmp_path: Path) -> None:
    base = Settings(data_dir=tmp_path, otel_endpoint="http://collector:4318/")
    assert tracing.endpoint(base) == "http://collector:4318/v1/traces"
    full = Settings(data_dir=tmp_path, otel_endpoint="http://collector:4318/v1/traces")
    assert tracing.endpoint(full) == "http://collector:4318/v1/traces"


def test_without_the_extra_the_module_imports_and_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh copy of service.core.tracing with `opentelemetry` unimportable (as without the extra)."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # `import opentelemetry...` raises ImportError
    spec = importlib.util.spec_from_file_location("tracing_without_otel", tracing.__file__)
    assert spec is not None and spec.loader is not None
    bare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bare)
    assert not bare.available()
    settings = Settings(data_dir=tmp_path, otel_endpoint="http://collector:4318")  # configured, not installed
    assert bare.setup(settings, "worker") is False and not bare.enabled()
    with bare.span("nothing") as s, bare.attached(object()):
        assert s is None and bare.inject() == {} and bare.ids() is None and bare.fields() == set()


def test_the_otel_extra_is_declared_and_installed_by_make_and_the_image() -> None:
    root = Path(__file__).resolve().parents[2]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {req.split(">")[0].split("=")[0].strip() for req in extras["otel"]}
    assert names == {"opentelemetry-api", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"}
    assert "otel" in (root / "Makefile").read_text().split("pip install -q -e '.[", 1)[1].split("]", 1)[0].split(",")
    assert "otel" in (root / "Dockerfile").read_text().split("ARG EXTRAS=", 1)[1].splitlines()[0].split(",")


def test_a_configured_process_exports_its_spans_by_otlp_http(tmp_path: Path) -> None:
    """ADVISOR_OTEL_ENDPOINT set: a fresh process (as `advisor worker` would) sets up the SDK and POSTs its
    spans as OTLP protobuf to ``<endpoint>/v1/traces`` (a collector stand-in on loopback)."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[tuple[str, str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the handler's API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    code = (
        "from opentelemetry import trace\n"
        "from service.core import tracing\n"
        "from service.core.config import Settings\n"
        "assert tracing.setup(Settings(), 'worker')\n"
        "with tracing.span('extract', job_id='job-1'):\n"
        "    pass\n"
        "trace.get_tracer_provider().shutdown()\n"
    )
    env = {**os.environ, "ADVISOR_OTEL_ENDPOINT": f"http://127.0.0.1:{server.server_port}", "DATA_DIR": str(tmp_path)}
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert [(path, ctype) for path, ctype, _ in received] == [("/v1/traces", "application/x-protobuf")]
    request = ExportTraceServiceRequest.FromString(received[0][2])
    (resource,) = request.resource_spans
    attrs = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert attrs["service.name"] == "redundancy-advisor" and attrs["advisor.component"] == "worker"
    (exported,) = [s for scope in resource.scope_spans for s in scope.spans]
    assert exported.name == "extract"
    assert {a.key: a.value.string_value for a in exported.attributes}["advisor.job_id"] == "job-1"


def test_a_worker_asked_for_json_writes_json_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery's after_setup_logger (sent once the worker has set up its handlers) switches them to JSON."""
    monkeypatch.setenv("ADVISOR_LOG_FORMAT", "json")
    get_settings.cache_clear()
    logger = logging.getLogger("tests.tracing.worker")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        after_setup_logger.send(sender=None, logger=logger, loglevel=logging.INFO, logfile=None, format="",
                                colorize=False)
        assert isinstance(handler.formatter, JsonLines)
    finally:
        logger.removeHandler(handler)
        get_settings.cache_clear()
