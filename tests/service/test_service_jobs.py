"""The job lifecycle over HTTP: submit, poll, run, result, recommendation, cancel, delete, list."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from redundancy.advice.recommend import intervals_from_summary, recommend
from redundancy.errors import UnknownLayerError
from redundancy.report import Report
from service.core.db import session_scope
from service.core.models import CurvePointRow, Job, JobResult, RecommendationRow

PROBLEM = "application/problem+json"


def test_submit_returns_202_location_and_queued_job(harness, job_body):
    r = harness.client.post("/v1/jobs", json=job_body())
    assert r.status_code == 202
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["progress"] == 0.0 and job["stage"] is None
    assert job["started_at"] is None and job["finished_at"] is None and job["error"] is None
    assert job["request"]["model"] == {"name": "resnet18", "weights": "random", "pooling": None}
    assert job["request"]["fractions"] == [0.1, 0.5, 1.0]
    assert harness.sent == [job["id"]]
    again = harness.client.get(r.headers["location"]).json()
    assert again["id"] == job["id"] and again["status"] == "queued"


def test_defaults_are_filled_from_the_engine_config(harness):
    job = harness.submit({"model": {"name": "tf_efficientnet_lite0", "weights": "bundled"},
                          "dataset": {"spec": "digits"}})
    assert len(job["request"]["fractions"]) == 14 and job["request"]["seeds"] == 5
    assert job["request"]["probe"] == "ridge" and job["request"]["delta_mode"] == "relative"


def test_run_to_success_and_read_result_and_recommendations(harness, job_body):
    job = harness.submit(job_body())
    assert harness.run_all() == ["succeeded"]
    done = harness.client.get(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "succeeded" and done["progress"] == 1.0 and done["stage"] == "done"
    assert done["started_at"] and done["finished_at"] and done["attempts"] == 1

    r = harness.client.get(f"/v1/jobs/{job['id']}/result")
    assert r.status_code == 200
    report = Report.model_validate(r.json())
    assert len(report.curve) == 5 and report.model.d == 64
    assert [x.delta for x in report.recommendations] == [0.01, 0.05]

    for delta in (0.0, 0.01, 0.05, 0.1, 0.3):
        for mode in ("relative", "absolute"):
            for crit in ("mean", "worst_seed"):
                got = harness.client.get(
                    f"/v1/jobs/{job['id']}/recommendation",
                    params={"delta": delta, "delta_mode": mode, "criterion": crit},
                )
                assert got.status_code == 200, got.text
                want = recommend(report.curve, report.dataset.classes, report.model.d, delta, mode, crit,
                                 intervals=intervals_from_summary(report.summary))
                body = got.json()
                for key in ("fraction", "k", "d", "dr", "accuracy", "full_accuracy", "threshold"):
                    assert body[key] == pytest.approx(getattr(want, key)), (delta, mode, crit, key)
                assert body["fairness"] == want.model_dump(by_alias=True, mode="json")["fairness"]
                assert body["job_id"] == job["id"] and body["model"] == "resnet18"
    # default δ: the job's first
    default = harness.client.get(f"/v1/jobs/{job['id']}/recommendation").json()
    assert default["delta"] == 0.01 and default["mode"] == "relative"


def test_recommendation_never_calls_the_engine(harness, job_body):
    job = harness.submit(job_body())
    harness.run_all()
    calls = harness.engine.calls
    for delta in (0.02, 0.2):
        assert harness.client.get(f"/v1/jobs/{job['id']}/recommendation?delta={delta}").status_code == 200
    assert harness.engine.calls == calls


def test_latest_recommendation_by_model_and_dataset(harness, job_body):
    r = harness.client.get("/v1/recommendations", params={"model": "resnet18", "dataset": "digits"})
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert "POST /v1/jobs" in r.json()["hint"]
    first = harness.submit(job_body())
    second = harness.submit(job_body(seeds=3))
    harness.run_all()
    r = harness.client.get("/v1/recommendations",
                           params={"model": "resnet18", "dataset": "digits", "delta": 0.05})
    assert r.status_code == 200
    assert r.json()["job_id"] == second["id"] != first["id"]
    assert r.json()["delta"] == 0.05
    r = harness.client.get("/v1/recommendations",
                           params={"model": "resnet18", "dataset": "digits", "weights": "hub"})
    assert r.status_code == 404


def test_engine_error_fails_the_job_with_code_message_field(harness, engine, job_body):
    engine.raise_ = UnknownLayerError("no module named 'nope' in resnet18")
    job = harness.submit(job_body(layer="nope"))
    assert harness.run_all() == ["failed"]
    got = harness.client.get(f"/v1/jobs/{job['id']}").json()
    assert got["status"] == "failed"
    assert got["error"] == {"code": "unknown_layer", "message": "no module named 'nope' in resnet18",
                            "field": "layer"}
    assert got["finished_at"] is not None
    r = harness.client.get(f"/v1/jobs/{job['id']}/result")
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM


def test_unexpected_exception_fails_as_internal_error(harness, engine, job_body):
    engine.raise_ = RuntimeError("boom")
    job = harness.submit(job_body())
    assert harness.run_all() == ["failed"]
    err = harness.client.get(f"/v1/jobs/{job['id']}").json()["error"]
    assert err["code"] == "internal_error" and "boom" in err["message"]


def test_result_write_is_atomic(harness, job_body, monkeypatch):
    from service.core import results

    real = results.store_report

    def half_then_crash(session, job_id, report):
        real(session, job_id, report)
        session.flush()
        raise OSError("disk full")

    monkeypatch.setattr(results, "store_report", half_then_crash)
    job = harness.submit(job_body())
    assert harness.run_all() == ["failed"]
    got = harness.client.get(f"/v1/jobs/{job['id']}").json()
    assert got["status"] == "failed" and got["error"]["code"] == "result_write_failed"
    with session_scope(harness.settings.db_url) as s:
        for model in (CurvePointRow, RecommendationRow, JobResult):
            assert s.scalar(sa.select(sa.func.count()).select_from(model)) == 0


def test_cancel_queued_job_never_starts(harness, job_body):
    job = harness.submit(job_body())
    r = harness.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled" and r.json()["cancel_requested"] is True
    assert harness.run_all() == ["skipped"]
    got = harness.client.get(f"/v1/jobs/{job['id']}").json()
    assert got["status"] == "cancelled" and got["started_at"] is None
    assert harness.engine.calls == 0
    # idempotent
    assert harness.client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200


def test_cancel_running_job_stops_at_next_checkpoint(harness, engine, job_body):
    engine.blocking = True
    job = harness.submit(job_body())
    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(harness.run(harness.sent.pop())))
    t.start()
    assert engine.entered.wait(10)
    running = harness.wait_status(job["id"], "running")
    assert running["status"] == "running"
    r = harness.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    t.join(15)
    assert result == ["cancelled"]
    got = harness.client.get(f"/v1/jobs/{job['id']}").json()
    assert got["status"] == "cancelled" and got["finished_at"] and got["error"] is None


def test_progress_is_written_while_a_stage_runs(harness, engine, job_body):
    engine.blocking = True
    job = harness.submit(job_body())
    t = threading.Thread(target=lambda: harness.run(harness.sent.pop()))
    t.start()
    try:
        assert engine.entered.wait(10)
        seen = harness.wait_status(job["id"], "running")
        for _ in range(100):
            seen = harness.client.get(f"/v1/jobs/{job['id']}").json()
            if seen["stage"] == "extract":
                break
            threading.Event().wait(0.05)
        assert seen["stage"] == "extract" and 0 < seen["progress"] < 1
        assert seen["message"] == "extract starting"
        with session_scope(harness.settings.db_url) as s:
            hb1 = s.get(Job, job["id"]).heartbeat_at
        threading.Event().wait(0.6)
        with session_scope(harness.settings.db_url) as s:
            hb2 = s.get(Job, job["id"]).heartbeat_at
        assert hb2 > hb1, "the monitor keeps heart-beating during a long stage"
    finally:
        engine.block.set()
        t.join(15)
    assert harness.client.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"


def test_cancel_finished_job_is_409(harness, job_body):
    job = harness.submit(job_body())
    harness.run_all()
    r = harness.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    assert r.json()["job_status"] == "succeeded"


def test_delete_finished_job_and_its_results(harness, job_body):
    job = harness.submit(job_body())
    harness.run_all()
    assert harness.client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert harness.client.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert harness.client.get(f"/v1/jobs/{job['id']}/result").status_code == 404
    with session_scope(harness.settings.db_url) as s:
        for model in (CurvePointRow, RecommendationRow, JobResult, Job):
            assert s.scalar(sa.select(sa.func.count()).select_from(model)) == 0
    assert harness.client.delete(f"/v1/jobs/{job['id']}").status_code == 404


def test_delete_queued_job_is_409_with_hint(harness, job_body):
    job = harness.submit(job_body())
    r = harness.client.delete(f"/v1/jobs/{job['id']}")
    assert r.status_code == 409 and "cancel" in r.json()["hint"]


def test_idempotency_key(harness, job_body):
    a = harness.client.post("/v1/jobs", json=job_body(), headers={"Idempotency-Key": "k1"})
    b = harness.client.post("/v1/jobs", json=job_body(), headers={"Idempotency-Key": "k1"})
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] == b.json()["id"]
    assert b.headers["idempotent-replayed"] == "true" and b.headers["location"] == a.headers["location"]
    assert len(harness.sent) == 1, "a replay does not enqueue twice"
    c = harness.client.post("/v1/jobs", json=job_body(seeds=3), headers={"Idempotency-Key": "k1"})
    assert c.status_code == 409 and c.headers["content-type"] == PROBLEM
    assert c.json()["job_id"] == a.json()["id"]
    d = harness.client.post("/v1/jobs", json=job_body(), headers={"Idempotency-Key": "k2"})
    assert d.json()["id"] != a.json()["id"]
    # same body without a key: a new job
    e = harness.client.post("/v1/jobs", json=job_body())
    assert e.json()["id"] not in (a.json()["id"], d.json()["id"])


def test_pagination_across_pages_and_filters(harness, job_body):
    ids = [harness.submit(job_body(seeds=i + 1))["id"] for i in range(7)]
    other = harness.submit(job_body(model={"name": "tf_efficientnet_lite0", "weights": "random"}))["id"]
    seen, token, pages = [], None, 0
    while True:
        params = {"page_size": 3, **({"page_token": token} if token else {})}
        page = harness.client.get("/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["items"]]
        pages += 1
        token = page["next_page_token"]
        if not token:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 8
    assert seen == list(reversed([*ids, other])), "newest first"
    by_model = harness.client.get("/v1/jobs", params={"model": "resnet18", "page_size": 100}).json()
    assert {j["id"] for j in by_model["items"]} == set(ids) and by_model["next_page_token"] is None
    harness.client.post(f"/v1/jobs/{ids[0]}/cancel")
    cancelled = harness.client.get("/v1/jobs", params={"status": "cancelled"}).json()
    assert [j["id"] for j in cancelled["items"]] == [ids[0]]
    assert harness.client.get("/v1/jobs", params={"dataset": "cifar10"}).json()["items"] == []


def test_api_keys_scope_jobs_to_their_owner(tmp_path, job_body, settings_factory, recording_queue):
    from fastapi.testclient import TestClient

    from service.core.config import hash_api_key
    from service.main import create_app

    settings = settings_factory(tmp_path, api_keys=f"alpha,sha256:{hash_api_key('beta')}")
    with TestClient(create_app(settings, queue=recording_queue, maintenance=False)) as client:
        r = client.post("/v1/jobs", json=job_body())
        assert r.status_code == 401 and r.headers["content-type"] == PROBLEM
        assert client.get("/v1/jobs", headers={"X-API-Key": "wrong"}).status_code == 401
        a = client.post("/v1/jobs", json=job_body(), headers={"X-API-Key": "alpha"}).json()
        b = client.post("/v1/jobs", json=job_body(), headers={"Authorization": "Bearer beta"}).json()
        assert client.get(f"/v1/jobs/{a['id']}", headers={"X-API-Key": "alpha"}).status_code == 200
        assert client.get(f"/v1/jobs/{a['id']}", headers={"X-API-Key": "beta"}).status_code == 404
        listed = client.get("/v1/jobs", headers={"X-API-Key": "beta"}).json()["items"]
        assert [j["id"] for j in listed] == [b["id"]]
        assert client.get("/healthz").status_code == 200, "health needs no key"
