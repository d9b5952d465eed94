"""Queues by device (issue 23 item 3): the routing rule, the queue names every side uses, the worker's queues and
device, the request's `device` field, the gpu queue's waiting jobs and their fallback to the cpu queue."""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from service.core import placement, presence
from service.core.db import session_scope
from service.core.maintenance import run_maintenance_once
from service.core.models import Job, WorkerPresence
from service.core.process import boot_id
from service.core.queue import (
    GPU_WAITING_STAGE,
    celery_config,
    device_queues,
    queue_name,
    route_for,
    route_of_queue,
    run_device,
    send_job,
    worker_queues,
)
from tests.service.conftest import RecordingQueue

PROBLEM = "application/problem+json"


# ---- the rules, as functions -------------------------------------------------------------------


@pytest.mark.parametrize(("device", "gpu_workers", "route"), [
    ("cpu", False, "cpu"), ("cpu", True, "cpu"),
    ("cuda", False, "gpu"), ("cuda", True, "gpu"), ("cuda:1", False, "gpu"),
    ("auto", False, "cpu"), ("auto", True, "gpu"), (None, False, "cpu"), (None, True, "gpu"),
])
def test_route_for(device: str | None, gpu_workers: bool, route: str) -> None:
    assert route_for(device, gpu_workers) == route


def test_queue_names_derive_from_the_base_queue() -> None:
    assert queue_name("analysis", "cpu") == "analysis.cpu"
    assert queue_name("analysis", "gpu") == "analysis.gpu"
    assert queue_name("analysis", None) == "analysis.cpu"  # a job sent before routes existed
    assert device_queues("analysis") == ["analysis", "analysis.cpu", "analysis.gpu"]
    assert route_of_queue("analysis", "analysis.gpu") == "gpu"
    assert route_of_queue("analysis", "analysis.cpu") == "cpu"
    assert route_of_queue("analysis", "analysis") is None and route_of_queue("analysis", None) is None


@pytest.mark.parametrize(("requested", "queues"), [
    (None, ["analysis", "analysis.cpu", "analysis.gpu"]),
    ("analysis", ["analysis", "analysis.cpu", "analysis.gpu"]),  # today's `--queues analysis`: everything
    ("cpu", ["analysis.cpu"]),
    ("gpu", ["analysis.gpu"]),
    ("cpu,gpu", ["analysis.cpu", "analysis.gpu"]),
    (" gpu , gpu ", ["analysis.gpu"]),
    ("other", ["other", "other.cpu", "other.gpu"]),  # another API's ADVISOR_QUEUE: everything it sends
    ("analysis,other.gpu", ["analysis", "analysis.cpu", "analysis.gpu", "other.gpu"]),  # a device queue in full
    ("", ["analysis", "analysis.cpu", "analysis.gpu"]),
])
def test_worker_queues(requested: str | None, queues: list[str]) -> None:
    assert worker_queues("analysis", requested) == queues


@pytest.mark.parametrize(("route", "worker_device", "requested", "device"), [
    ("gpu", "auto", "cuda", "cuda"), ("gpu", "auto", "auto", "cuda"),
    ("cpu", "auto", "cpu", "cpu"),  # asked for the cpu: the cpu, whatever the worker has
    # no gpu workers declared: an auto job is in the cpu queue, and runs on the best device of the worker that
    # takes it (bench/gpu.sh on an H200 found the embedded server extracting on the CPU: 65 s for 10,000 images)
    ("cpu", "auto", "auto", "auto"),
    ("cpu", "auto", "cuda", "auto"),  # fell back from the gpu queue: whatever the cpu-queue worker has
    (None, "auto", "auto", "auto"), (None, "auto", "cpu", "cpu"),
    ("gpu", "cpu", "cuda", "cpu"),  # a test host forces cpu on its gpu-queue worker
    ("cpu", "cuda:1", "cpu", "cuda:1"),
])
def test_run_device(route: str | None, worker_device: str, requested: str, device: str) -> None:
    assert run_device(route, worker_device, requested) == device


def test_a_task_runs_on_the_device_of_the_queue_it_came_through_and_of_its_job(harness, job_body) -> None:
    from workers.routing import delivered_queue, device_settings

    def request(queue: str | None) -> SimpleNamespace:
        return SimpleNamespace(delivery_info={"routing_key": queue} if queue else None)

    settings = harness.settings
    auto, cpu = harness.submit(job_body())["id"], harness.submit(job_body(device="cpu"))["id"]
    base = settings.queue
    assert device_settings(settings, request(f"{base}.gpu"), auto).device == "cuda"
    assert device_settings(settings, request(f"{base}.cpu"), cpu).device == "cpu"
    assert device_settings(settings, request(f"{base}.cpu"), auto).device == "auto"  # the worker's best
    assert device_settings(settings, request(None), cpu) is settings  # eager: the worker's own setting
    assert delivered_queue(request(f"{base}.gpu")) == f"{base}.gpu"
    forced = settings.model_copy(update={"device": "cpu"})
    assert device_settings(forced, request(f"{base}.gpu"), auto).device == "cpu"


def test_send_job_picks_the_device_queue_when_the_queue_can(settings) -> None:
    class Routed(RecordingQueue):
        def enqueue_to(self, job_id: str, route: str | None) -> None:
            self.sent.append(f"{job_id}->{route}")

    routed, plain = Routed(), RecordingQueue()
    send_job(routed, "j1", "gpu")
    send_job(plain, "j2", "gpu")
    assert routed.sent == ["j1->gpu"] and plain.sent == ["j2"]


def test_the_celery_queue_sends_to_the_device_queue(settings) -> None:
    from service.celery_queue import CeleryJobQueue

    sent: list[tuple[str, list[str], str]] = []
    celery = SimpleNamespace(send_task=lambda name, args, queue: sent.append((name, args, queue)))
    q = CeleryJobQueue(celery, "analysis")  # type: ignore[arg-type]
    q.enqueue_to("a", "gpu")
    q.enqueue_to("b", None)
    q.enqueue("c")
    assert [(a[0], s) for _, a, s in sent] == [("a", "analysis.gpu"), ("b", "analysis.cpu"), ("c", "analysis.cpu")]


def test_a_worker_with_no_queues_consumes_every_device_queue_and_cpu_gpu_name_them(settings) -> None:
    from workers.celery_app import _queues_by_device, make_celery

    s = settings.model_copy(update={"queue": "qtest"})
    assert celery_config(s)["task_default_queue"] == "qtest"
    for select, want in ((None, {"qtest", "qtest.cpu", "qtest.gpu"}), (["gpu"], {"qtest.gpu"}),
                         (["cpu"], {"qtest.cpu"}), (["qtest"], {"qtest", "qtest.cpu", "qtest.gpu"})):
        app = make_celery(s)
        if select:
            app.amqp.queues.select(select)
        _queues_by_device(instance=SimpleNamespace(app=app))
        assert set(app.amqp.queues.consume_from) == want, select


# ---- the request field ---------------------------------------------------------------------------


@pytest.mark.parametrize(("override", "field"), [
    ({"device": "gpu"}, "device"),
    ({"device": "cuda:0"}, "device"),
    ({"device": 3}, "device"),
    ({"device_fallback_after": -1}, "device_fallback_after"),
    ({"device_fallback_after": "soon"}, "device_fallback_after"),
])
def test_bad_device_is_422_naming_the_field(client, job_body, override, field) -> None:
    r = client.post("/v1/jobs", json=job_body(**override))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert field in [e["field"] for e in r.json()["errors"]]


def test_device_is_not_part_of_the_analysis(harness, job_body) -> None:
    """The same analysis asked on cpu and on cuda has one config hash (the answer does not depend on it)."""
    cpu = harness.submit(job_body(device="cpu"))
    cuda = harness.submit(job_body(device="cuda"))
    assert cpu["config_hash"] == cuda["config_hash"]
    assert "device" not in cpu["request"]


def test_routes_of_new_jobs(harness, job_body, settings) -> None:
    auto = harness.submit(job_body())
    cpu = harness.submit(job_body(device="cpu", device_fallback_after=5))
    assert auto["device"] == {"requested": "auto", "queue": "cpu", "fallback_after": None, "fell_back_at": None}
    assert cpu["device"]["queue"] == "cpu" and cpu["device"]["fallback_after"] is None  # nothing to fall back from
    assert auto["waiting"] is None and auto["stage"] is None


def test_auto_goes_to_the_gpu_queue_when_gpu_workers_exist(settings_factory, tmp_path, engine, job_body) -> None:
    from fastapi.testclient import TestClient

    from service.main import create_app

    s = settings_factory(tmp_path, gpu_workers=True)
    with TestClient(create_app(s, queue=RecordingQueue(), maintenance=False)) as c:
        job = c.post("/v1/jobs", json=job_body()).json()
    assert job["device"]["queue"] == "gpu" and job["stage"] == GPU_WAITING_STAGE


# ---- waiting in the gpu queue, and falling back ---------------------------------------------------


class DepthProbe:
    def __init__(self, gpu: int) -> None:
        self.gpu, self.calls = gpu, 0

    def depth(self) -> int | None:
        return None

    def depth_of(self, route: str) -> int | None:
        self.calls += 1
        return self.gpu if route == "gpu" else 0


def _age(settings, job_id: str, seconds: float) -> None:
    with session_scope(settings.db_url) as s:
        s.execute(sa.update(Job).where(Job.id == job_id)
                  .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)))


def test_a_cuda_job_waits_for_a_gpu_worker_with_the_queue_depth(harness, job_body) -> None:
    job = harness.submit(job_body(device="cuda"))
    assert job["status"] == "queued" and job["stage"] == GPU_WAITING_STAGE
    assert job["device"]["queue"] == "gpu"
    assert job["waiting"] == {"worker": "gpu", "queue_depth": None, "workers_alive": None, "fallback_at": None}
    stats = run_maintenance_once(harness.settings, harness, DepthProbe(gpu=3))
    assert stats["fell_back"] == 0  # no device_fallback_after: it waits however long
    got = harness.client.get(f"/v1/jobs/{job['id']}").json()
    assert got["stage"] == f"{GPU_WAITING_STAGE} (none seen in the last 20 s; queue depth 3)"
    assert got["waiting"]["queue_depth"] == 3 and got["waiting"]["workers_alive"] == 0


def test_a_cuda_job_falls_back_to_the_cpu_queue_after_its_time(harness, job_body) -> None:
    job = harness.submit(job_body(device="cuda", device_fallback_after=30))
    created = dt.datetime.fromisoformat(job["created_at"].replace("Z", "+00:00"))
    fallback_at = dt.datetime.fromisoformat(job["waiting"]["fallback_at"].replace("Z", "+00:00"))
    assert fallback_at - created == dt.timedelta(seconds=30)
    harness.sent.clear()
    assert run_maintenance_once(harness.settings, harness, DepthProbe(gpu=1))["fell_back"] == 0, "not yet"
    assert harness.sent == []
    _age(harness.settings, job["id"], 31)
    assert run_maintenance_once(harness.settings, harness, DepthProbe(gpu=1))["fell_back"] == 1
    assert harness.sent == [job["id"]], "sent again at once (to the cpu queue)"
    got = harness.client.get(f"/v1/jobs/{job['id']}").json()
    assert got["status"] == "queued" and got["waiting"] is None and got["stage"] is None
    assert got["device"]["queue"] == "cpu" and got["device"]["requested"] == "cuda"
    assert got["device"]["fell_back_at"] is not None and "fell back to the cpu queue" in got["message"]
    assert run_maintenance_once(harness.settings, harness, DepthProbe(gpu=1))["fell_back"] == 0, "once"
    assert harness.run_all() == ["succeeded"]
    done = harness.client.get(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "succeeded" and done["device"]["fell_back_at"] == got["device"]["fell_back_at"]


def test_a_claimed_job_does_not_fall_back(harness, job_body) -> None:
    job = harness.submit(job_body(device="cuda", device_fallback_after=1))
    assert harness.run_all() == ["succeeded"]  # a gpu worker took it in time
    _age(harness.settings, job["id"], 60)
    assert run_maintenance_once(harness.settings, harness)["fell_back"] == 0
    assert harness.client.get(f"/v1/jobs/{job['id']}").json()["device"]["fell_back_at"] is None


def test_the_resend_of_a_lost_message_goes_to_the_jobs_device_queue(harness, job_body) -> None:
    class Routed(RecordingQueue):
        def enqueue_to(self, job_id: str, route: str | None) -> None:
            self.sent.append(f"{job_id}->{route}")

    job = harness.submit(job_body(device="cuda"))
    with session_scope(harness.settings.db_url) as s:
        s.execute(sa.update(Job).where(Job.id == job["id"]).values(enqueued_at=None))
    _age(harness.settings, job["id"], 10)
    routed = Routed()
    assert run_maintenance_once(harness.settings, routed)["requeued"] == 1
    assert routed.sent == [f"{job['id']}->gpu"]


def test_same_idempotency_key_with_another_device_is_a_409(client, job_body) -> None:
    first = client.post("/v1/jobs", json=job_body(device="cuda"), headers={"Idempotency-Key": "k1"})
    again = client.post("/v1/jobs", json=job_body(device="cuda"), headers={"Idempotency-Key": "k1"})
    other = client.post("/v1/jobs", json=job_body(device="cpu"), headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert other.status_code == 409, other.text


def test_a_cuda_job_on_a_process_without_cuda_fails_naming_device(monkeypatch) -> None:
    """A gpu-queue job that reaches a worker without CUDA fails with a clear error, not an internal one."""
    import torch

    from redundancy import Runtime
    from redundancy.errors import DeviceUnavailableError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailableError) as err:
        Runtime(device="cuda").resolve_device()
    assert err.value.field == "device" and err.value.code == "device_unavailable"
    assert Runtime(device="auto").resolve_device() == "cpu" and Runtime(device="cpu").resolve_device() == "cpu"


def test_messages_left_in_the_gpu_queue_do_not_hold_back_a_cpu_resend(harness, job_body) -> None:
    """Jobs that fell back leave their old messages in the gpu queue; the resend bound counts per queue."""

    class Probe(DepthProbe):
        def depth(self) -> int | None:
            return self.gpu  # all of them in the gpu queue

    job = harness.submit(job_body(device="cpu"))
    harness.sent.clear()  # the broker lost it
    with session_scope(harness.settings.db_url) as s:
        s.execute(sa.update(Job).where(Job.id == job["id"]).values(
            enqueued_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))
    assert run_maintenance_once(harness.settings, harness, Probe(gpu=5))["requeued"] == 1
    assert harness.sent == [job["id"]]
    harness.sent.clear()
    with session_scope(harness.settings.db_url) as s:
        s.execute(sa.update(Job).where(Job.id == job["id"]).values(
            enqueued_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))

    class CpuWaiting(Probe):
        def depth_of(self, route: str) -> int | None:
            return 1 if route == "cpu" else self.gpu

    assert run_maintenance_once(harness.settings, harness, CpuWaiting(gpu=5))["requeued"] == 0, "its message waits"


# ---- whether a gpu worker is alive ----------------------------------------------------------------


def _beat(settings, worker_id: str, queues: list[str], seconds_ago: float = 0.0) -> None:
    with session_scope(settings.db_url) as s:
        presence.beat(s, worker_id, worker_id.split(":")[0], queues,
                      now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds_ago))


def test_the_wait_says_whether_a_worker_consuming_the_gpu_queue_is_alive(harness, job_body) -> None:
    """The sweep counts the workers' own beats in the database: alive within ADVISOR_STALE_AFTER (20 s) of their
    last beat and not known dead; only those consuming this API's gpu queue count."""
    s = harness.settings
    gpu_queue, cpu_queue = queue_name(s.queue, "gpu"), queue_name(s.queue, "cpu")
    job = harness.submit(job_body(device="cuda"))
    probe = DepthProbe(gpu=2)
    _beat(s, "cpuhost:11:1:b", [cpu_queue])  # alive, but not on the gpu queue
    _beat(s, "gpuhost:12:1:b", [gpu_queue], seconds_ago=25)  # on the gpu queue, silent for 25 s
    _beat(s, "gpuhost:13:1:b", ["other-api.gpu"])  # another API's gpu queue
    _beat(s, f"{socket.gethostname()}:{os.getpid()}:1:{boot_id()}", [gpu_queue])  # this pid, another start: dead
    run_maintenance_once(s, harness, probe)
    got = harness.client.get(f"/v1/jobs/{job['id']}").json()
    assert got["stage"] == f"{GPU_WAITING_STAGE} (none seen in the last 20 s; queue depth 2)"
    assert got["waiting"]["workers_alive"] == 0

    _beat(s, "gpuhost:12:1:b", [gpu_queue])  # it beats again
    _beat(s, "gpuhost:14:1:b", [cpu_queue, gpu_queue])  # a cpu,gpu worker
    probe.gpu = 5
    run_maintenance_once(s, harness, probe)
    calls = probe.calls
    for _ in range(3):  # reads show what the sweep noted: no broker, no count per GET
        got = harness.client.get(f"/v1/jobs/{job['id']}").json()
        assert got["stage"] == f"{GPU_WAITING_STAGE} (2 alive; queue depth 5)"
        assert got["waiting"]["workers_alive"] == 2 and got["waiting"]["queue_depth"] == 5
    assert probe.calls == calls
    listed = harness.client.get("/v1/jobs").json()["items"]
    assert [j["stage"] for j in listed if j["id"] == job["id"]] == [got["stage"]]


def test_the_stage_says_when_the_depth_is_unknown_and_fits_its_column() -> None:
    unknown = placement.waiting_stage(None, 0, 20)
    assert unknown == f"{GPU_WAITING_STAGE} (none seen in the last 20 s; queue depth unknown)"
    assert placement.waiting_stage(0, 1, 7.5) == f"{GPU_WAITING_STAGE} (1 alive; queue depth 0)"
    longest = placement.waiting_stage(10**9, 0, 86400.5)
    assert len(longest) <= Job.__table__.c.stage.type.length


def test_a_worker_beats_while_up_and_its_row_goes_on_a_warm_shutdown(settings) -> None:
    s = settings.model_copy(update={"heartbeat": 0.05, "stale_after": 0.2})
    assert presence.interval(s) == 0.05 and presence.interval(settings) == 5.0  # defaults: every 5 s
    _beat(s, "gone:1:1:b", ["q.gpu"], seconds_ago=presence.GONE_AFTER + 60)  # a worker killed an hour ago
    thread = presence.PresenceThread(s, "gpu1@host", ["q.gpu"])
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with session_scope(s.db_url) as db:
                if presence.alive(db, "q.gpu", s.stale_after) == 1:
                    break
            time.sleep(0.02)
        with session_scope(s.db_url) as db:
            rows = db.execute(sa.select(WorkerPresence.id, WorkerPresence.name, WorkerPresence.queues)).all()
        assert [(r.id, r.name, r.queues) for r in rows] == [(thread.worker_id, "gpu1@host", ["q.gpu"])], \
            "its row, and the long-gone one cleared at its start"
        time.sleep(0.3)  # past stale_after: it is still alive because it keeps beating
        with session_scope(s.db_url) as db:
            assert presence.alive(db, "q.gpu", s.stale_after) == 1
    finally:
        thread.stop()
    with session_scope(s.db_url) as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(WorkerPresence)) == 0


def test_a_started_worker_announces_its_queues_and_leaves_on_shutdown(settings, monkeypatch) -> None:
    """The worker's signal handlers: ready starts the beats with the queues it consumes, shutdown stops them."""
    from workers import celery_app

    monkeypatch.setitem(celery_app.app.conf, "advisor_settings", settings)
    monkeypatch.setattr(celery_app.app.amqp.queues, "_consume_from", {"q.gpu": object()})
    celery_app._announce(sender=SimpleNamespace(hostname="gpu1@host"))
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with session_scope(settings.db_url) as db:
                if presence.alive(db, "q.gpu", settings.stale_after):
                    break
            time.sleep(0.02)
        with session_scope(settings.db_url) as db:
            assert db.scalar(sa.select(WorkerPresence.name)) == "gpu1@host"
    finally:
        celery_app._leave()
    with session_scope(settings.db_url) as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(WorkerPresence)) == 0


def test_a_forked_child_drops_the_pool_it_inherited_without_closing_the_parents_connections(settings) -> None:
    """A prefork child forked after the worker was ready (its presence beats hold pooled connections) opens its
    own: workers.celery_app calls db.forget_inherited in worker_process_init."""
    from service.core import db

    engine = db.get_engine(settings.db_url)
    inherited = engine.pool
    with engine.connect() as parents:  # a connection the parent is using
        db.forget_inherited()
        assert engine.pool is not inherited
        assert parents.execute(sa.text("SELECT 1")).scalar() == 1, "not closed under the parent"
    with engine.connect() as own:
        assert own.execute(sa.text("SELECT 1")).scalar() == 1
