"""Issue 9, parts 2 and 4: every input is capped, and what used to be a 500 (or a worker-side
`internal_error`) is a clean problem+json at the edge."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from redundancy.config import MAX_DELTAS, MAX_FRACTIONS, MAX_NAME_CHARS, MAX_SEED
from service.api.limits import MAX_QUERY_VALUES
from service.core import migrate
from service.core.db import session_scope
from service.core.maintenance import run_maintenance_once
from service.core.models import Job
from service.main import create_app

PROBLEM = "application/problem+json"


def _problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"]
    return body


def _fields(r) -> list[str]:
    return [e["field"] for e in r.json().get("errors", [])]


# ---- sizes -------------------------------------------------------------------------------------

def test_a_body_over_the_limit_is_413_before_it_is_read(harness, job_body):
    huge = job_body(layer="x" * 1_000_000)  # 1 MB here; 100 MB was accepted and stored before
    r = harness.client.post("/v1/jobs", json=huge)
    _problem(r, 413)
    assert harness.sent == [] and harness.client.get("/v1/jobs").json()["items"] == []


def test_a_streamed_body_is_counted_too(client, job_body):
    blob = json.dumps(job_body(layer="y" * 200_000)).encode()

    def chunks():
        for i in range(0, len(blob), 8192):
            yield blob[i : i + 8192]

    r = client.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    _problem(r, 413)


def test_the_body_limit_is_a_setting(tmp_path, settings_factory, recording_queue, job_body):
    settings = settings_factory(tmp_path, max_body_bytes=2048)
    with TestClient(create_app(settings, queue=recording_queue, maintenance=False)) as c:
        assert c.post("/v1/jobs", json=job_body(layer="z" * 2100)).status_code == 413
        assert c.post("/v1/jobs", json=job_body(layer="z" * 100)).status_code == 202


@pytest.mark.parametrize(
    ("override", "field", "reason_part"),
    [
        ({"fractions": [round(0.001 * i, 3) for i in range(1, MAX_FRACTIONS + 2)]}, "fractions", "at most"),
        ({"deltas": [round(0.001 * i, 3) for i in range(MAX_DELTAS + 1)]}, "deltas", "at most"),
        ({"layer": "l" * (MAX_NAME_CHARS + 1)}, "layer", "at most"),
        ({"layer": ""}, "layer", "at least 1"),
        ({"seed": 2**70}, "seed", "less than or equal to"),
        ({"seed": MAX_SEED + 1}, "seed", "less than or equal to"),
        ({"dataset": {"spec": "npz:/" + "p" * 5000}}, "dataset.spec", "at most"),
        ({"dataset": {"spec": "digits", "max_train": 10**12}}, "dataset.max_train", "less than or equal to"),
        ({"model": {"name": "resnet18", "weights": "/" + "w" * 5000 + ".pth"}}, "model.weights", "at most"),
        ({"baselines": ["pca", "pca", "pca", "pca"]}, "baselines", "at most"),
    ],
)
def test_lists_strings_and_integers_are_capped(client, job_body, override, field, reason_part):
    r = client.post("/v1/jobs", json=job_body(**override))
    body = _problem(r, 422)
    assert field in _fields(r), body
    assert reason_part in " ".join(e["reason"] for e in body["errors"] if e["field"] == field), body


def test_a_long_path_component_is_refused_at_submission(client, job_body, settings):
    spec = f"npz:{settings.data_path}/{'c' * 300}.npz"  # the OS would refuse it in the worker
    r = client.post("/v1/jobs", json=job_body(dataset={"spec": spec}))
    assert _fields(r) == ["dataset.spec"] and "255 bytes" in _problem(r, 422)["errors"][0]["reason"]


def test_plot_deltas_are_capped(harness, job_body):
    job = harness.submit(job_body())
    harness.run_all()
    many = "&".join(f"delta={0.001 * i:.3f}" for i in range(MAX_QUERY_VALUES + 1))
    r = harness.client.get(f"/v1/jobs/{job['id']}/plot.svg?{many}")
    assert _fields(_problem(r, 422) and r) == ["delta"]
    few = "&".join(f"delta={0.001 * i:.3f}" for i in range(MAX_QUERY_VALUES))
    assert harness.client.get(f"/v1/jobs/{job['id']}/plot.svg?{few}").status_code == 200


# ---- per-key caps: active jobs and request rate -------------------------------------------------

def test_active_jobs_per_key_are_capped_with_429(harness, job_body):
    h, c = harness, harness.client
    h.settings.max_active_jobs, h.settings.retry_after = 3, 7  # the app reads its settings per request
    if True:
        for seeds in range(1, 4):
            h.submit(job_body(seeds=seeds), **{"Idempotency-Key": f"k{seeds}"})
        r = c.post("/v1/jobs", json=job_body(seeds=9))
        assert _problem(r, 429)["type"].endswith("too-many-active-jobs")
        assert r.headers["Retry-After"] == "7"
        replay = c.post("/v1/jobs", json=job_body(seeds=1), headers={"Idempotency-Key": "k1"})
        assert replay.status_code == 202 and replay.headers["Idempotent-Replayed"] == "true"
        h.run(h.sent.pop(0))  # one finishes: room for one more
        assert c.post("/v1/jobs", json=job_body(seeds=9)).status_code == 202
        assert c.post("/v1/jobs", json=job_body(seeds=10)).status_code == 429


def test_two_submissions_racing_for_the_last_active_place_cannot_both_pass(harness, job_body, monkeypatch):
    """ADVISOR_MAX_ACTIVE_JOBS: the count and the insert are one step (the owner's place held, the count taken
    after the insert). A rendezvous makes each thread's n-th count wait for the other's: code that counts and
    then inserts lets both read max - 1 and both pass; here the second insert waits for the first commit."""
    from service.core import lifecycle, queries
    from tests.service.upload_race import Rendezvous, race

    h = harness
    h.settings.max_active_jobs = 2
    h.submit(job_body(seeds=1))
    meet = Rendezvous()
    for module in (queries, lifecycle):
        real = module.active_jobs

        def counted(*args, _real=real, **kwargs):  # noqa: ANN002, ANN003
            out = _real(*args, **kwargs)
            meet.wait()
            return out

        monkeypatch.setattr(module, "active_jobs", counted)
    answers = race(lambda: h.client.post("/v1/jobs", json=job_body(seeds=2)),
                   lambda: h.client.post("/v1/jobs", json=job_body(seeds=3)))
    assert sorted(r.status_code for r in answers) == [202, 429], [r.text for r in answers]
    assert len(h.client.get("/v1/jobs").json()["items"]) == 2


def test_request_rate_per_key_is_limited_with_429(tmp_path, settings_factory, recording_queue):
    settings = settings_factory(tmp_path, api_keys="alice,bob", rate_limit="5/minute")
    with TestClient(create_app(settings, queue=recording_queue, maintenance=False)) as c:
        alice, bob = {"X-API-Key": "alice"}, {"X-API-Key": "bob"}
        assert [c.get("/v1/jobs", headers=alice).status_code for _ in range(5)] == [200] * 5
        r = c.get("/v1/jobs", headers=alice)
        _problem(r, 429)
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert c.get("/v1/jobs", headers=bob).status_code == 200, "another key has its own budget"
        assert c.get("/healthz").status_code == 200, "probes are not rate limited"


def _redis_url() -> str | None:
    import redis

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=0.5).ping()
    except Exception:  # noqa: BLE001
        return None
    return "redis://127.0.0.1:6379/0"


def test_rate_is_shared_between_replicas_through_redis(tmp_path, settings_factory, recording_queue):
    url = _redis_url()
    if url is None:
        pytest.skip("Redis not reachable on 127.0.0.1:6379")
    settings = settings_factory(tmp_path, broker_url=url, queue=f"rl-{uuid.uuid4().hex}", rate_limit="4/minute")
    one = TestClient(create_app(settings, queue=recording_queue, maintenance=False))
    two = TestClient(create_app(settings, queue=recording_queue, maintenance=False))
    assert [one.get("/v1/jobs").status_code for _ in range(2)] == [200, 200]
    assert [two.get("/v1/jobs").status_code for _ in range(2)] == [200, 200]
    assert one.get("/v1/jobs").status_code == 429 and two.get("/v1/jobs").status_code == 429


# ---- the maintenance sweep keeps the broker's backlog bounded ----------------------------------

class CountingBroker:
    """A FIFO broker: `enqueue` appends, a worker would pop; `depth` is what waits."""

    def __init__(self) -> None:
        self.waiting: list[str] = []

    def enqueue(self, job_id: str) -> None:
        self.waiting.append(job_id)

    def ping(self) -> str | None:
        return None

    def depth(self) -> int | None:
        return len(self.waiting)


def _age_messages(settings, seconds: float) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    with session_scope(settings.db_url) as s:
        s.execute(sa.update(Job).values(enqueued_at=old, created_at=old))


def test_sweep_never_resends_a_waiting_message_and_the_backlog_stays_bounded(tmp_path, settings_factory, job_body):
    settings = settings_factory(tmp_path)
    broker = CountingBroker()
    with TestClient(create_app(settings, queue=broker, maintenance=False)) as c:
        ids = [c.post("/v1/jobs", json=job_body(seeds=i + 1)).json()["id"] for i in range(8)]
    assert broker.waiting == ids
    for _ in range(5):  # the workers are busy for hours: every job is overdue, every round
        _age_messages(settings, 10 * 3600)
        assert run_maintenance_once(settings, broker, broker)["requeued"] == 0
    assert len(broker.waiting) == 8, "a message still waiting is never sent again"
    lost = broker.waiting[:3]
    del broker.waiting[:3]  # the broker loses the three oldest messages
    _age_messages(settings, 10 * 3600)
    assert run_maintenance_once(settings, broker, broker)["requeued"] == 3
    assert sorted(broker.waiting) == sorted(ids) and set(lost) <= set(broker.waiting)
    _age_messages(settings, 10 * 3600)
    run_maintenance_once(settings, broker, broker)
    assert len(broker.waiting) <= 8, "backlog bounded by the number of queued jobs"


# ---- clean errors ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"layer": "lay\x00er"}, "layer"),
        ({"dataset": {"spec": "npz:/tmp/a\x00b.npz"}}, "dataset.spec"),
        ({"model": {"name": "resnet18", "weights": "/tmp/x\x00.pth"}}, "model.weights"),
    ],
)
def test_nul_bytes_in_the_body_are_422(harness, job_body, override, field):
    r = harness.client.post("/v1/jobs", json=job_body(**override))
    assert field in _fields(_problem(r, 422) and r) and harness.sent == []


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/v1/jobs?model=res%00net", "model"),
        ("/v1/jobs?dataset=%00", "dataset"),
        ("/v1/jobs?page_token=a%00b", "page_token"),
        ("/v1/recommendations?model=a%00&dataset=digits", "model"),
        ("/v1/jobs/abc%00def", "path"),
        ("/v1/catalog/models?q=%00", "q"),
    ],
)
def test_nul_bytes_in_the_url_are_422(client, url, field):
    r = client.get(url)
    assert _fields(_problem(r, 422) and r) == [field]


def _token(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        _token({"t": "9999-12-31T23:59:59-14:00", "i": "x"}),  # overflows when moved to UTC (was a 500)
        _token({"t": "0001-01-01T00:00:00+14:00", "i": "x"}),
        _token({"t": "2026-01-01T00:00:00+00:00", "i": "a\x00b"}),
        _token({"t": "2026-01-01T00:00:00+00:00", "i": ["x"]}),
        _token({"t": "2026-01-01T00:00:00+00:00", "i": "x" * 100}),
        _token([1, 2]),
        "%%%",
    ],
)
def test_bad_page_tokens_are_400_naming_page_token(client, token):
    r = client.get("/v1/jobs", params={"page_token": token})
    body = _problem(r, 400)
    assert _fields(r) == ["page_token"] and body["errors"][0]["location"] == "query"


@pytest.mark.parametrize(
    ("content", "position"),
    [(b'{"model": ', 10), (b"\xff\xfe{}", 0), (b'{"a": 1,}', 8)],
)
def test_undecodable_json_is_400_naming_body_with_the_position(client, content, position):
    r = client.post("/v1/jobs", content=content, headers={"content-type": "application/json"})
    body = _problem(r, 400)
    assert _fields(r) == ["body"]
    assert f"position {position}" in body["detail"], body


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_wrong_content_type_is_415(harness, job_body, content_type):
    r = harness.client.post("/v1/jobs", content=json.dumps(job_body()), headers={"content-type": content_type})
    _problem(r, 415)
    assert harness.sent == []


def test_json_with_charset_or_a_json_suffix_is_accepted(client, job_body):
    for ct in ("application/json; charset=utf-8", "application/vnd.advisor+json"):
        r = client.post("/v1/jobs", content=json.dumps(job_body(seeds=3)), headers={"content-type": ct})
        assert r.status_code == 202, r.text


def test_cancel_without_a_body_needs_no_content_type(harness, job_body):
    job = harness.submit(job_body())
    assert harness.client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200


V1_ROUTES = [
    ("get", "/v1/jobs"),
    ("post", "/v1/jobs"),
    ("get", f"/v1/jobs/{uuid.uuid4()}"),
    ("post", f"/v1/jobs/{uuid.uuid4()}/cancel"),
    ("delete", f"/v1/jobs/{uuid.uuid4()}"),
    ("get", f"/v1/jobs/{uuid.uuid4()}/result"),
    ("get", f"/v1/jobs/{uuid.uuid4()}/recommendation"),
    ("get", f"/v1/jobs/{uuid.uuid4()}/plot.svg"),
    ("get", "/v1/recommendations?model=resnet18&dataset=digits"),
]


def _assert_503_everywhere(c: TestClient, job_body) -> None:
    for method, path in V1_ROUTES:
        r = c.request(method.upper(), path, json=job_body() if method == "post" and path == "/v1/jobs" else None)
        body = _problem(r, 503)
        assert body["type"].endswith("database-unavailable") and int(r.headers["Retry-After"]) >= 1, path
    r = c.get("/readyz")
    assert r.status_code == 503 and "Retry-After" in r.headers


def test_database_down_is_503_then_recovers_without_restart(tmp_path, make_settings_for, recording_queue, job_body):
    """SQLite that cannot be opened (a directory stands where the file should be), then can: the same
    app serves again."""
    blocker = tmp_path / "advisor.sqlite"
    blocker.mkdir()
    settings = make_settings_for(tmp_path, database_url=f"sqlite:///{blocker}")
    with TestClient(create_app(settings, queue=recording_queue, maintenance=False)) as c:
        _assert_503_everywhere(c, job_body)
        blocker.rmdir()
        migrate.upgrade(settings.db_url)
        assert c.post("/v1/jobs", json=job_body()).status_code == 202
        assert c.get("/v1/jobs").status_code == 200 and c.get("/readyz").status_code == 200


def test_postgres_down_is_503_on_every_route(tmp_path, make_settings_for, recording_queue, job_body):
    """An engine pointing at a closed port (nothing listens on port 1)."""
    settings = make_settings_for(tmp_path, database_url="postgresql+psycopg://postgres@127.0.0.1:1/advisor")
    with TestClient(create_app(settings, queue=recording_queue, maintenance=False)) as c:
        _assert_503_everywhere(c, job_body)


@pytest.fixture
def make_settings_for():
    """Settings whose database is not migrated (or not there)."""
    from service.core.config import Settings
    from service.core.db import dispose_all

    def make(tmp, **over):
        return Settings(**{"data_dir": tmp / "data", "broker_url": None, "maintenance_interval": 0, **over})

    yield make
    dispose_all()


def test_worker_startup_sweep_reads_the_real_redis_depth(tmp_path, settings_factory, job_body):
    """The same bound through a real Redis queue (nobody consuming it) and the worker's own sender."""
    url = _redis_url()
    if url is None:
        pytest.skip("Redis not reachable on 127.0.0.1:6379")
    import redis

    from service.celery_queue import CeleryJobQueue
    from service.core.queue import device_queues
    from workers.celery_app import make_celery

    queue = f"backlog-{uuid.uuid4().hex}"
    settings = settings_factory(tmp_path, broker_url=url.replace("/0", "/13"), queue=queue)
    app = make_celery(settings)
    sender = CeleryJobQueue(app, queue)
    try:
        with TestClient(create_app(settings, queue=sender, maintenance=False)) as c:
            for i in range(3):
                assert c.post("/v1/jobs", json=job_body(seeds=i + 1)).status_code == 202
        assert sender.depth() == 3
        for _ in range(3):
            _age_messages(settings, 10 * 3600)
            assert run_maintenance_once(settings, sender, sender)["requeued"] == 0
        assert sender.depth() == 3
    finally:
        redis.Redis.from_url(url.replace("/0", "/13")).delete(*device_queues(queue))
        app.pool.force_close_all()
