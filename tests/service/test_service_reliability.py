"""Issue 9 §1 in-process: a request that cannot get a database connection is answered 503 +
Retry-After at once (not after a hang, not 500); finished reads come from the in-process cache with an
ETag and 304; a delete drops them; another key never sees them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from fastapi.testclient import TestClient

from redundancy import AnalysisConfig
from service.core.db import get_engine
from service.core.models import Job
from service.main import create_app
from tests.service.conftest import Harness, small_job


@contextmanager
def every_connection_taken(db_url: str) -> Iterator[None]:
    """Check out every connection of the process's pool for ``db_url`` (what 100 clients did)."""
    engine = get_engine(db_url)
    with ExitStack() as stack:
        for _ in range(engine.pool.size()):
            stack.enter_context(engine.connect())
        yield


def test_no_free_connection_is_a_503_with_retry_after(settings_factory, tmp_path, engine) -> None:  # type: ignore[no-untyped-def]
    settings = settings_factory(tmp_path, api_threads=2, db_pool_timeout=0.2, retry_after=3)
    h = Harness(settings, None, engine)  # type: ignore[arg-type]
    with TestClient(create_app(settings, queue=h, maintenance=False)) as client:
        assert client.get("/v1/jobs").status_code == 200
        with every_connection_taken(settings.db_url):
            r = client.get("/v1/jobs")
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["retry-after"] == "3"
        assert r.json()["type"].endswith(":database-unavailable")
        assert client.get("/v1/jobs").status_code == 200  # and it recovers at once


def test_pool_matches_the_thread_count(settings_factory, tmp_path, engine) -> None:  # type: ignore[no-untyped-def]
    settings = settings_factory(tmp_path, api_threads=7)
    with TestClient(create_app(settings, queue=Harness(settings, None, engine), maintenance=False)) as client:
        client.get("/v1/jobs")
        pool = get_engine(settings.db_url).pool
        assert pool.size() == 7 + 4 and pool._max_overflow == 0  # type: ignore[attr-defined]
        assert pool._timeout == settings.db_pool_timeout  # type: ignore[attr-defined]


def _finished(harness: Harness) -> str:
    job = harness.submit()
    harness.run_all()
    assert harness.client.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"
    return str(job["id"])


FINISHED_READS = ["/result", "/recommendation?delta=0.05", "/plot.svg"]


def test_finished_reads_have_an_etag_and_answer_304(harness: Harness) -> None:
    job_id = _finished(harness)
    for suffix in FINISHED_READS:
        first = harness.client.get(f"/v1/jobs/{job_id}{suffix}")
        assert first.status_code == 200 and first.headers["etag"].startswith('"'), suffix
        again = harness.client.get(f"/v1/jobs/{job_id}{suffix}", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b"", suffix
        assert again.headers["etag"] == first.headers["etag"]
        other = harness.client.get(f"/v1/jobs/{job_id}{suffix}", headers={"If-None-Match": '"nope"'})
        assert other.status_code == 200 and other.content == first.content, suffix


def test_cached_reads_need_no_database_connection(harness: Harness) -> None:
    job_id = _finished(harness)
    pages = "/v1/jobs?status=succeeded&page_size=5"
    want = {s: harness.client.get(f"/v1/jobs/{job_id}{s}").content for s in FINISHED_READS}
    want_page = harness.client.get(pages).json()
    assert [j["id"] for j in want_page["items"]] == [job_id]
    with every_connection_taken(harness.settings.db_url):
        for suffix, body in want.items():
            r = harness.client.get(f"/v1/jobs/{job_id}{suffix}")
            assert (r.status_code, r.headers["x-cache"], r.content) == (200, "hit", body), suffix
        assert harness.client.get(pages).json() == want_page
        assert harness.client.get(f"/v1/jobs/{job_id}").status_code == 503  # a job's status is never cached


def test_cache_is_per_key_and_dropped_on_delete(settings_factory, tmp_path, engine) -> None:  # type: ignore[no-untyped-def]
    settings = settings_factory(tmp_path, api_keys="alice,bob")
    h = Harness(settings, None, engine)  # type: ignore[arg-type]
    with TestClient(create_app(settings, queue=h, maintenance=False)) as client:
        h.client = client
        job = h.submit(small_job(), **{"X-API-Key": "alice"})
        h.run_all()
        url = f"/v1/jobs/{job['id']}/recommendation?delta=0.05"
        assert client.get(url, headers={"X-API-Key": "alice"}).status_code == 200
        assert client.get(url, headers={"X-API-Key": "bob"}).status_code == 404
        assert client.delete(f"/v1/jobs/{job['id']}", headers={"X-API-Key": "alice"}).status_code == 204
        assert client.get(url, headers={"X-API-Key": "alice"}).status_code == 404


def test_known_dead_only_for_a_gone_process_on_this_machine() -> None:
    import subprocess
    import sys

    from service.core.process import known_dead, process_id

    child = subprocess.Popen([sys.executable, "-c", "from service.core.process import process_id; "
                              "print(process_id(), flush=True); import time; time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    theirs = child.stdout.readline().strip()
    assert not known_dead(theirs) and not known_dead(process_id())
    child.kill()
    child.wait()
    assert known_dead(theirs)
    host, pid, start, boot = theirs.rsplit(":", 3)
    assert not known_dead(f"elsewhere:{pid}:{start}:{boot}")  # another host: only its heartbeat tells
    assert not known_dead(f"{host}:{pid}:{start}:otherboot")
    assert not known_dead("test") and not known_dead(None)


def test_a_dead_owners_job_is_taken_over_at_once_and_its_result_fenced(settings, engine) -> None:  # type: ignore[no-untyped-def]
    from service.core import lifecycle
    from service.core.db import session_scope
    from service.core.maintenance import run_maintenance_once
    from tests.service.conftest import RecordingQueue

    app = create_app(settings, queue=RecordingQueue(), maintenance=False)
    with TestClient(app) as client:
        job_id = client.post("/v1/jobs", json=small_job()).json()["id"]
    dead = "thishost:1:1:gone"
    with session_scope(settings.db_url) as s:
        first = lifecycle.claim(s, job_id, worker=dead, stale_after=3600)
        assert first is not None
        assert lifecycle.claim(s, job_id, worker="w2", stale_after=3600) is None  # heartbeat is fresh
        second = lifecycle.claim(s, job_id, worker="w2", stale_after=3600, dead_owner=dead)
        assert second is not None and second.attempt == first.attempt + 1
        assert lifecycle.claim(s, job_id, worker="w3", stale_after=3600, dead_owner=dead) is None  # w2 holds it
        report = engine.report_fn(AnalysisConfig.model_validate(small_job()))
        assert not lifecycle.succeed(s, job_id, first.attempt, report, {})  # the dead attempt cannot store
    # the sweep requeues a job whose owner process is known dead, without waiting for stale_after
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "from service.core.process import process_id; print(process_id())"],
                           capture_output=True, text=True, check=True)
    gone = child.stdout.strip()
    with session_scope(settings.db_url) as s:
        other = lifecycle.create(s, AnalysisConfig.model_validate(small_job(seeds=3)), owner="",
                                 idempotency_key=None)[0]
        assert lifecycle.claim(s, other.id, worker=gone, stale_after=3600) is not None
    stats = run_maintenance_once(settings.model_copy(update={"stale_after": 3600}), RecordingQueue())
    assert stats["revived"] == 1
    with session_scope(settings.db_url) as s:
        assert s.get(Job, other.id).status == "queued"  # type: ignore[union-attr]


def test_a_cache_hit_skips_the_route_but_not_auth_rate_limit_or_metrics(settings_factory, tmp_path, engine) -> None:  # type: ignore[no-untyped-def]
    """`CacheHits` answers a cached read in front of the router: the route's function is not called;
    a missing or wrong key still gets 401, another key's entry stays invisible, the rate limit still
    counts hits, and the request metrics name the route's template."""
    from service.api.routes import jobs as job_routes

    settings = settings_factory(tmp_path, api_keys="alice,bob", rate_limit="6/minute")
    h = Harness(settings, None, engine)  # type: ignore[arg-type]
    with TestClient(create_app(settings, queue=h, maintenance=False)) as client:
        h.client = client
        alice = {"X-API-Key": "alice"}
        job = h.submit(small_job(), **alice)  # 1 request of alice's 6
        h.run_all()
        url = f"/v1/jobs/{job['id']}/recommendation?delta=0.05"
        first = client.get(url, headers=alice)  # 2: a miss, built by the route
        assert (first.status_code, first.headers["x-cache"]) == (200, "miss")
        calls: list[str] = []
        real = job_routes.cached

        async def spy(*a, **k):  # type: ignore[no-untyped-def]
            calls.append("route")
            return await real(*a, **k)

        job_routes.cached = spy  # type: ignore[assignment]
        try:
            hits = [client.get(url, headers=alice) for _ in range(4)]  # 3..6: hits
        finally:
            job_routes.cached = real  # type: ignore[assignment]
        assert calls == [] and {(r.status_code, r.headers["x-cache"], r.content) for r in hits} == {
            (200, "hit", first.content)}
        over = client.get(url, headers=alice)  # 7: over alice's rate, hit or not
        assert over.status_code == 429 and over.headers["content-type"] == "application/problem+json"
        assert client.get(url).status_code == 401
        assert client.get(url, headers={"X-API-Key": "mallory"}).status_code == 401
        assert client.get(url, headers={"X-API-Key": "bob"}).status_code == 404
        metrics = client.get("/metrics", headers={"X-API-Key": "bob"}).text
        line = next(x for x in metrics.splitlines() if x.startswith("advisor_http_request_duration_seconds_count")
                    and 'route="/v1/jobs/{job_id}/recommendation"' in x and 'status="200"' in x)
        assert float(line.rsplit(" ", 1)[1]) == 5.0  # the miss and the four hits, under the template
