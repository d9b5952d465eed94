"""Issue 23, "what an operator's probe found": each test failed before its fix."""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from service.core import webhooks
from service.core.config import get_settings
from service.core.db import session_scope
from service.core.models import WebhookDelivery
from service.core.webhook_delivery import post, run_deliveries_once
from service.main import create_app
from tests.service.conftest import small_job
from tests.service.hooks import HookReceiver
from workers.runner import execute_job


class Receiver(HookReceiver):
    """Keeps (path, event, monotonic time) of each POST."""

    def record(self, path: str, headers: dict[str, str], body: bytes) -> tuple[str, dict, float]:
        return path, json.loads(body), time.monotonic()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


# ---------------------------------------------------------------------------------------------
# probe 4: one tenant's webhooks never stall another's; URLs normalised at submission


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("http://127.0.0.1:{port}/hooks/ünïcode?q=é x", "http://127.0.0.1:{port}/hooks/%C3%BCn%C3%AFcode?q=%C3%A9%20x"),
        ("HTTP://127.0.0.1:{port}/a%20b/ok", "http://127.0.0.1:{port}/a%20b/ok"),
    ],
)
def test_callback_urls_are_normalised_at_submission_and_sent(tmp_path, settings_factory, recording_queue, engine,
                                                             receiver, raw, stored):
    port = receiver.server.server_address[1]
    s = settings_factory(tmp_path, webhook_allow="loopback", webhook_backoff=0.0)
    with TestClient(create_app(s, queue=recording_queue, maintenance=False)) as client:
        r = client.post("/v1/jobs", json=small_job(callback_url=raw.format(port=port)))
        assert r.status_code == 202, r.text
        assert r.json()["callback_url"] == stored.format(port=port)
        execute_job(r.json()["id"], s, analyze=engine, worker_name="test")
    assert run_deliveries_once(s)["delivered"] == 1
    [(path, event, _)] = receiver.got
    assert stored.format(port=port).endswith(path) and event["data"]["job_id"] == r.json()["id"]


def test_idna_hosts_are_encoded_and_unencodable_urls_are_422_naming_callback_url(harness):
    assert webhooks.normalise_callback_url("https://Bücher.example/p") == "https://xn--bcher-kva.example/p"
    assert webhooks.normalise_callback_url("http://[::1]:8080/x y") == "http://[::1]:8080/x%20y"
    for bad in ("http://" + "a" * 64 + ".example/", "http://127.0.0.1/\ud800", "http://exa mple.com/"):
        r = harness.client.post("/v1/jobs", content=json.dumps(small_job(callback_url=bad)),
                                headers={"content-type": "application/json"})
        assert r.status_code == 422, (bad, r.text)
        assert [e["field"] for e in r.json()["errors"]] == ["callback_url"], r.text
    assert harness.client.get("/v1/jobs").json()["items"] == []


def _two_key_deliveries(tmp_path, settings_factory, recording_queue, engine, receiver, n_one: int):
    s = settings_factory(tmp_path, api_keys="key-one,key-two", webhook_allow="loopback", webhook_backoff=0.0,
                         webhook_max_attempts=3)
    ids: dict[str, list[str]] = {"key-one": [], "key-two": []}
    with TestClient(create_app(s, queue=recording_queue, maintenance=False)) as client:
        for key, n in (("key-one", n_one), ("key-two", 1)):
            for _ in range(n):
                r = client.post("/v1/jobs", json=small_job(callback_url=f"{receiver.base}/{key}"),
                                headers={"X-API-Key": key})
                assert r.status_code == 202, r.text
                execute_job(r.json()["id"], s, analyze=engine, worker_name="test")
                ids[key].append(r.json()["id"])
    return s, ids


def test_one_keys_failing_deliveries_never_stop_or_delay_another_keys(tmp_path, settings_factory,
                                                                      recording_queue, engine, receiver):
    s, ids = _two_key_deliveries(tmp_path, settings_factory, recording_queue, engine, receiver, n_one=12)
    with session_scope(s.db_url) as session:  # rows stored before URLs were normalised: non-ASCII paths
        session.execute(sa.update(WebhookDelivery).where(WebhookDelivery.job_id.in_(ids["key-one"][:4]))
                        .values(url=f"{receiver.base}/hooks/ünï"))
    slow = 0.4

    def send(url, body, headers, timeout, allow):  # key one's receiver: slow, then an exception
        if "/key-one" in url:
            time.sleep(slow)
            raise RuntimeError("the receiver's library blew up")
        return post(url, body, headers, timeout, allow)

    start = time.monotonic()
    stats = run_deliveries_once(s, send=send)
    took = time.monotonic() - start
    by_path = {p: t for p, _, t in receiver.got}
    assert "/key-two" in by_path and by_path["/key-two"] - start < slow, (by_path, took)
    # key one: at most PER_KEY_PER_ROUND (10) this round: the four legacy rows sent (encoded), six failed
    assert stats["delivered"] == 1 + 4 and stats["pending"] == 6
    assert sum(1 for p, _, _ in receiver.got if p == "/hooks/%C3%BCn%C3%AF") == 4, by_path
    for _ in range(3):
        run_deliveries_once(s, send=send)
    with session_scope(s.db_url) as session:
        rows = session.scalars(sa.select(WebhookDelivery).where(WebhookDelivery.job_id.in_(ids["key-one"][4:]))).all()
        assert {(r.state, r.attempts) for r in rows} == {("failed", 3)}
        assert all("RuntimeError" in r.last_error for r in rows)


def test_a_delivery_that_cannot_be_sent_fails_instead_of_escaping(receiver):
    allow = webhooks.Allowance.parse("loopback")
    out = post(f"{receiver.base}/\udc80", b"{}", {}, 2.0, allow)
    assert out.status_code is None and out.permanent and out.error.startswith("refused:")


# ---------------------------------------------------------------------------------------------
# probe 7: IPv6 addresses that embed an IPv4 one are judged by it


@pytest.mark.parametrize(
    ("addr", "category"),
    [("2002:7f00:1::", "loopback"), ("2002:a00:1::", "private"), ("2002:a9fe:a9fe::", "link-local"),
     ("64:ff9b::7f00:1", "loopback"), ("64:ff9b::a00:1", "private"), ("::127.0.0.1", "loopback"),
     ("::10.0.0.1", "private"), ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),
     ("2002:808:808::", None), ("64:ff9b::808:808", None), ("::ffff:8.8.8.8", None), ("::", "reserved")],
)
def test_embedded_ipv4_addresses_are_checked(addr, category):
    assert webhooks.address_category(ipaddress.ip_address(addr)) == category


# ---------------------------------------------------------------------------------------------
# probe 3: the server caps a request's head (bytes and fields) before anything else reads it


@pytest.fixture
def live_server(settings):
    import socket

    import uvicorn

    from service.http_limits import LimitedHttpToolsProtocol

    class Capped(LimitedHttpToolsProtocol):
        max_head_bytes, max_header_count = 16 * 1024, 20

    app = create_app(settings, maintenance=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, loop="asyncio", http=Capped, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(timeout=10)


def _raw(port: int, head: bytes, chunks: Iterator[bytes] = iter(())) -> tuple[bytes, int]:
    """Send ``head`` then ``chunks`` until the server closes; (its answer, bytes we managed to send)."""
    import socket

    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(head)
            sent += len(head)
            for chunk in chunks:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        answer = b""
        try:
            while data := s.recv(65536):
                answer += data
        except OSError:
            pass
    return answer, sent


def test_an_endless_header_is_431_before_it_is_all_read(live_server):
    def endless() -> Iterator[bytes]:
        for _ in range(200 * 16):  # 200 MiB, never sent in full
            yield b"a" * 65536

    answer, sent = _raw(live_server, b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ", endless())
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"application/problem+json" in answer and b"ADVISOR_MAX_HEADER_BYTES" in answer
    assert sent < 64 * 2**20  # the server stopped reading long before


def test_a_large_head_in_one_piece_and_too_many_fields_are_431(live_server):
    big, _ = _raw(live_server, b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 20000 + b"\r\n\r\n")
    assert big.startswith(b"HTTP/1.1 431 "), big[:200]
    many = b"".join(b"x-h%d: 1\r\n" % i for i in range(21))
    answer, _ = _raw(live_server, b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ") and b"header fields" in answer, answer[:300]
    fine = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-fine: " + b"a" * 8000 + b"\r\nconnection: close\r\n\r\n"
    ok, _ = _raw(live_server, fine)
    assert ok.startswith(b"HTTP/1.1 200 "), ok[:200]


def test_advisor_serve_runs_uvicorn_with_the_capped_protocol(tmp_path, monkeypatch):
    import uvicorn

    from service import cli
    from service.http_limits import LimitedHttpToolsProtocol

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    monkeypatch.delenv("BROKER_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "d"))  # restored after: serve sets it
    try:
        assert cli.main(["serve", "--data-dir", str(tmp_path / "d"), "--no-worker", "--port", "0"]) == 0
    finally:
        get_settings.cache_clear()
    assert seen["http"] is LimitedHttpToolsProtocol and seen["loop"] == "asyncio"


# ---------------------------------------------------------------------------------------------
# probe 5: a symlink inside a data root does not lead a dataset out of it


def _imagefolder(root, classes=("a", "b")):
    from PIL import Image

    for split in ("train", "test"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (i * 50, 0, 0)).save(d / f"{i}.png")
    return root


def test_a_linked_split_or_file_out_of_the_roots_is_refused_and_every_open_is_checked(tmp_path):
    from redundancy import Runtime
    from redundancy.errors import PathNotAllowedError
    from redundancy.sources.datasets.registry import load_dataset

    root, outside = tmp_path / "root", _imagefolder(tmp_path / "outside")
    runtime = Runtime(cache_dir=None, confine_to=(root,))
    linked = root / "x"
    linked.mkdir(parents=True)
    (linked / "train").symlink_to(outside / "train")
    (linked / "test").symlink_to(outside / "test")
    with pytest.raises(PathNotAllowedError, match="outside the allowed data roots"):
        load_dataset(f"imagefolder:{linked}", runtime)
    assert len(load_dataset(f"imagefolder:{linked}", Runtime(cache_dir=None)).train) == 4  # the CLI: unconfined

    inside = _imagefolder(root / "y")
    (inside / "train" / "a" / "1.png").unlink()
    (inside / "train" / "a" / "1.png").symlink_to(outside / "train" / "a" / "1.png")
    with pytest.raises(PathNotAllowedError):
        load_dataset(f"imagefolder:{inside}", runtime)

    (inside / "train" / "a" / "1.png").unlink()
    (inside / "train" / "a" / "1.png").write_bytes((outside / "train" / "a" / "1.png").read_bytes())
    ds = load_dataset(f"imagefolder:{inside}", runtime)
    assert ds.train.load(0).size == (8, 8)
    (inside / "train" / "a" / "0.png").unlink()  # swapped after the listing, before the open
    (inside / "train" / "a" / "0.png").symlink_to(outside / "train" / "a" / "0.png")
    with pytest.raises(PathNotAllowedError):
        ds.train.load(0)


def test_the_worker_fails_a_job_whose_imagefolder_links_out_of_the_root(harness, settings):
    from redundancy.sources.datasets.registry import load_dataset
    from service.core.runtime import make_runtime

    assert make_runtime(settings).confine_to == settings.allowed_roots
    outside = _imagefolder(settings.data_path.parent / "elsewhere")
    linked = settings.data_path / "datasets" / "x"
    linked.mkdir(parents=True)
    (linked / "train").symlink_to(outside / "train")
    (linked / "test").symlink_to(outside / "test")
    job = harness.submit(small_job(dataset={"spec": f"imagefolder:{linked}"}))  # the top path is inside
    opened: list[str] = []

    def analyze(config, runtime, **_kw):
        ds = load_dataset(config.dataset.spec, runtime, config.dataset)
        opened.append(ds.spec)

    assert execute_job(job["id"], settings, analyze=analyze, worker_name="test") == "failed"
    assert opened == []
    error = harness.client.get(f"/v1/jobs/{job['id']}").json()["error"]
    assert error["code"] == "path_not_allowed" and "outside the allowed data roots" in error["message"], error


# ---------------------------------------------------------------------------------------------
# probe 7: an npz holding object arrays is a dataset-format error


@pytest.mark.parametrize("member", ["x_train", "y_test", "classes"])
def test_an_npz_with_object_arrays_is_a_dataset_format_error(tmp_path, member):
    import numpy as np

    from redundancy import Runtime
    from redundancy.errors import DatasetFormatError
    from redundancy.sources.datasets.registry import load_dataset

    arrays = {"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.array([0, 1, 0, 1]),
              "x_test": np.zeros((2, 8, 8), np.uint8), "y_test": np.array([0, 1]), "classes": np.array(["a", "b"])}
    arrays[member] = np.array([{"a": 1}] * len(arrays[member]), dtype=object)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetFormatError, match=f"{member} is an object array") as info:
        load_dataset(f"npz:{tmp_path / 'bad.npz'}", Runtime(cache_dir=None))
    assert info.value.code == "dataset_format"


# ---------------------------------------------------------------------------------------------
# probe 6: a job's claim names the worker process, so a redelivered message can take it over at once


def test_run_job_claims_in_the_name_of_its_process_not_celerys_node(monkeypatch, harness, settings):
    import subprocess
    import sys

    from service.core import process
    from workers import tasks

    seen: dict = {}
    monkeypatch.setattr(tasks, "execute_job", lambda job_id, s, **kw: seen.update(kw) or "skipped")
    tasks.run_job.push_request(hostname="celery@somehost")
    try:
        tasks.run_job.run("job-1")
    finally:
        tasks.run_job.pop_request()
    name = seen["worker_name"]
    assert name == process.process_id() and process.ProcessId.parse(name) is not None
    assert not process.known_dead(name)  # this process is alive

    # the name a worker process recorded before it died: its job is taken over by the next message at once
    dead = subprocess.run([sys.executable, "-c", "from service.core.process import process_id; print(process_id())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert process.known_dead(dead)
    job = harness.submit(small_job())
    from service.core import lifecycle

    with session_scope(settings.db_url) as s:
        assert lifecycle.claim(s, job["id"], worker=dead, stale_after=3600) is not None
    assert harness.run(job["id"]) == "succeeded"  # stale_after is 20 s: only known_dead allows this now


# ---------------------------------------------------------------------------------------------
# probe 7: a queued job whose message is gone is re-sent within a bounded time


def test_the_resend_backoff_is_bounded(harness, settings):
    import datetime as dt

    from service.core.maintenance import run_maintenance_once
    from service.core.models import Job

    job = harness.submit(small_job())
    harness.sent.clear()  # its message acked away while the database was down, the resends lost too
    ago = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=settings.requeue_max_after + 1)
    with session_scope(settings.db_url) as s:  # sent 6 times: the doubling alone would wait 32 x 120 s
        s.execute(sa.update(Job).where(Job.id == job["id"]).values(enqueued_at=ago, enqueue_count=6))
    assert settings.requeue_max_after <= 300
    assert run_maintenance_once(settings, harness)["requeued"] == 1 and harness.sent == [job["id"]]


def test_a_message_received_while_the_database_is_down_is_retried_not_acked(monkeypatch):
    from celery.exceptions import Retry
    from sqlalchemy import exc as sa_exc

    from workers import tasks

    def execute(job_id, settings, **kw):
        raise sa_exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    retried: list[dict] = []

    def retry(**kw):
        retried.append(kw)
        return Retry("again", kw.get("exc"))

    monkeypatch.setattr(tasks, "execute_job", execute)
    monkeypatch.setattr(tasks.run_job, "retry", retry)
    for retries, outcome in ((0, Retry), (tasks.DB_RETRIES, sa_exc.OperationalError)):
        tasks.run_job.push_request(retries=retries, id="m1")
        try:
            with pytest.raises(outcome):
                tasks.run_job.run("job-9")
        finally:
            tasks.run_job.pop_request()
    [kw] = retried  # sent again (a new message) after the delay; the last time: failed, left to the sweep
    assert kw["countdown"] == tasks.app.conf.advisor_settings.db_retry_delay and kw["max_retries"] == tasks.DB_RETRIES


# ---------------------------------------------------------------------------------------------
# probes 1 and 2: a hung or dead Redis neither stalls the API nor holds a request's connection


class BlackHole:
    """A TCP server that accepts every connection and never answers (a `kill -STOP`ped Redis)."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.held: list = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


def test_the_rate_limiter_fails_open_to_memory_when_redis_hangs(tmp_path, settings_factory, black_hole):
    from service.api.limits import RateLimiter

    s = settings_factory(tmp_path, broker_url=f"redis://127.0.0.1:{black_hole.port}/0", rate_limit="3/second")
    limiter = RateLimiter(s)
    start = time.monotonic()
    assert limiter.retry_after("key") is None
    assert time.monotonic() - start < 1.0 and limiter.storage_failures == 1 and limiter.in_memory
    start = time.monotonic()
    answers = [limiter.retry_after("key") for _ in range(3)]
    assert time.monotonic() - start < 0.1  # Redis left alone while it does not answer
    assert answers[:2] == [None, None] and answers[2] is not None  # still a limit, counted in memory
    assert limiter.storage_failures == 1


def test_a_hung_redis_stalls_neither_post_nor_readyz_nor_metrics(tmp_path, settings_factory, black_hole):
    s = settings_factory(tmp_path, broker_url=f"redis://127.0.0.1:{black_hole.port}/0", broker_timeout=0.5,
                         metrics_public=True, webhook_poll_interval=0)
    with TestClient(create_app(s, maintenance=False)) as client:
        timings = {}
        for name, call in (
            ("post", lambda: client.post("/v1/jobs", json=small_job())),
            ("post2", lambda: client.post("/v1/jobs", json=small_job(seeds=3))),
            ("readyz", lambda: client.get("/readyz")),
            ("metrics", lambda: client.get("/metrics")),
            ("list", lambda: client.get("/v1/jobs")),
        ):
            start = time.monotonic()
            r = call()
            timings[name] = (r.status_code, round(time.monotonic() - start, 2))
            if name.startswith("post"):
                assert r.status_code == 202 and r.json()["status"] == "queued", r.text
        assert timings["readyz"][0] == 503 and timings["metrics"][0] == 200, timings
        assert all(t < 2.0 for _, t in timings.values()), timings
        assert timings["post2"][1] < 0.5 and timings["list"][1] < 0.5, timings
        assert "advisor_rate_limit_storage_failures_total 1.0" in client.get("/metrics").text
        jobs = client.get("/v1/jobs").json()["items"]
        assert {j["status"] for j in jobs} == {"queued"} and len(jobs) == 2  # committed; the sweep sends them


# ---------------------------------------------------------------------------------------------
# must-have 6: past the in-flight bound, 503 + Retry-After at once (never silence)


def test_past_the_bound_of_writes_in_flight_a_post_is_503_with_retry_after_at_once(tmp_path, settings_factory):
    from concurrent.futures import ThreadPoolExecutor

    release = threading.Event()
    entered = threading.Semaphore(0)

    class SlowQueue:  # a broker that holds each send until released (the writes pile up)
        def enqueue(self, job_id: str) -> None:
            entered.release()
            release.wait(20)

    s = settings_factory(tmp_path, max_in_flight_writes=2, retry_after=3, webhook_poll_interval=0)
    with TestClient(create_app(s, queue=SlowQueue(), maintenance=False)) as client, ThreadPoolExecutor(2) as pool:
        held = [pool.submit(client.post, "/v1/jobs", json=small_job(seeds=n)) for n in (2, 3)]
        assert entered.acquire(timeout=10) and entered.acquire(timeout=10)
        start = time.monotonic()
        r = client.post("/v1/jobs", json=small_job(seeds=4))
        assert time.monotonic() - start < 0.5
        assert r.status_code == 503 and r.headers["retry-after"] == "3", r.text
        assert r.headers["content-type"] == "application/problem+json" and "writes in flight" in r.json()["detail"]
        assert client.get("/v1/jobs").status_code == 200  # reads are not writes
        assert client.get("/healthz").status_code == 200
        release.set()
        assert [f.result(timeout=10).status_code for f in held] == [202, 202]
        assert client.post("/v1/jobs", json=small_job(seeds=5)).status_code == 202  # room again


# ---------------------------------------------------------------------------------------------
# probe 8: a flooding key's excess is refused from this process's own count, without Redis


def test_a_flooding_keys_excess_never_reaches_redis_and_another_key_still_passes(tmp_path, settings_factory):
    import uuid

    from service.api.limits import RateLimiter

    s = settings_factory(tmp_path, broker_url="redis://127.0.0.1:6379/0", rate_limit="5/second",
                         queue=f"probe8-{uuid.uuid4().hex}")  # its own namespace in the shared Redis
    limiter = RateLimiter(s)
    asked: list[str] = []
    hit = limiter.limiter.hit
    limiter.limiter.hit = lambda item, *ids: asked.append(ids[-1]) or hit(item, *ids)  # type: ignore[method-assign]
    flood = [limiter.retry_after("key-a") for _ in range(200)]
    assert flood[:5] == [None] * 5 and all(w is not None and w >= 1 for w in flood[5:])
    assert asked.count("key-a") == 5  # the other 195 answered from memory: no round trip, no thread
    assert limiter.retry_after("key-b") is None and asked.count("key-b") == 1
    assert limiter.storage_failures == 0


def test_a_caller_over_its_rate_is_refused_without_walking_its_window_until_it_frees(tmp_path, settings_factory,
                                                                                      monkeypatch):
    """The local count is asked until the caller is refused; then, until the moment its window frees a place,
    the answer (the same Retry-After) comes from the remembered time alone; after it the count is asked again."""
    from service.api import limits

    s = settings_factory(tmp_path, rate_limit="3/second")
    limiter = limits.RateLimiter(s)
    now = [1_000_000.0]
    monkeypatch.setattr(limits.time, "time", lambda: now[0])
    asked: list[str] = []
    hit = limiter.local.hit
    limiter.local.hit = lambda item, *ids: asked.append(ids[-1]) or hit(item, *ids)  # type: ignore[method-assign]
    answers = [limiter.retry_after("k") for _ in range(50)]
    assert answers[:3] == [None] * 3 and set(answers[3:]) == {1}
    assert asked.count("k") == 4  # three hits and the refusal that set the memo
    until = limiter._blocked["k"]
    now[0] = until - 0.5
    assert limiter.retry_after("k") == 1 and asked.count("k") == 4
    now[0] = until + 0.01  # the memo is over: the count decides again, and its window has a place
    assert limiter.retry_after("k") is None and asked.count("k") == 5 and "k" not in limiter._blocked


def test_the_rate_gate_answers_429_before_routing_and_the_route_never_sees_it(tmp_path, settings_factory,
                                                                             monkeypatch):
    """A key over its rate gets 429 problem+json with Retry-After from the gate: the key hashed once a request
    (the route takes the gate's identity), labelled `<rate-limited>` in the request metrics; another key still
    passes; a bad key is the route's 401; outside /v1 nothing is counted."""
    from service.api import deps, limits

    s = settings_factory(tmp_path, rate_limit="2/minute", api_keys="ka,kb", metrics_public=True,
                         webhook_poll_interval=0)
    calls: list[str] = []
    real = deps.owner_of

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003
        calls.append("owner_of")
        return real(*args, **kwargs)

    monkeypatch.setattr(limits, "owner_of", counted)
    monkeypatch.setattr(deps, "owner_of", counted)
    with TestClient(create_app(s, maintenance=False)) as client:
        a = {"X-API-Key": "ka"}
        assert [client.get("/v1/jobs", headers=a).status_code for _ in range(2)] == [200, 200]
        r = client.get("/v1/jobs", headers=a)
        assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
        assert int(r.headers["retry-after"]) >= 1 and r.json()["instance"] == "/v1/jobs"
        assert calls == ["owner_of"] * 3  # the gate's alone: the routes' dependency took its identity
        assert client.get("/v1/jobs", headers={"Authorization": "Bearer kb"}).status_code == 200
        bad = client.get("/v1/jobs", headers={"X-API-Key": "nope"})
        assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
        assert all(client.get("/healthz").status_code == 200 for _ in range(5))  # not counted
        assert 'route="<rate-limited>",status="429"' in client.get("/metrics").text


def test_a_refusal_is_held_back_the_rate_limit_delay_unless_too_many_wait(tmp_path, settings_factory, monkeypatch):
    """ADVISOR_RATE_LIMIT_DELAY: a 429 is sent after the delay (a client that asks again at once asks once per
    delay); 0 sends it at once, and so does a full bound of held refusals (MAX_DELAYED)."""
    from service.api import limits

    def first_429_seconds(delay: float, sub: str) -> float:
        s = settings_factory(tmp_path / sub, rate_limit="1/minute", rate_limit_delay=delay, webhook_poll_interval=0)
        with TestClient(create_app(s, maintenance=False)) as client:
            assert client.get("/v1/jobs").status_code == 200
            start = time.monotonic()
            r = client.get("/v1/jobs")
            took = time.monotonic() - start
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
            return took

    assert first_429_seconds(0.4, "held") >= 0.4
    assert first_429_seconds(0.0, "at-once") < 0.4
    monkeypatch.setattr(limits, "MAX_DELAYED", 0)
    assert first_429_seconds(0.4, "bound") < 0.4
