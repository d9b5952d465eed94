"""Issue 9 §1 in-process: a request that cannot get a database connection is answered 503 +
Retry-After at once (not after a hang, not 500); finished reads come from the in-process cache with an
ETag and 304; a delete drops them; another key never sees them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from fastapi.testclient import TestClient

from service.core.db import get_engine
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
        assert r.json()["type"].endswith(":unavailable")
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
