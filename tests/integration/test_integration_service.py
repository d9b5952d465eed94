"""End to end against the machine's real Postgres and Redis and a real Celery worker process."""

from __future__ import annotations

import time
import uuid

import pytest
import sqlalchemy as sa

from redundancy.advice.recommend import intervals_from_summary
from redundancy.report import Report
from redundancy.verdict import advise
from service.core import migrate
from tests.service.conftest import single_layer, stored_answer

# What only the stored answer has: the paired bootstrap of (subset − threshold), full layer resampled too.
PAIRED_ONLY = {"holds_ci_lower", "margin_ci_low", "margin_ci_high", "ci_method"}


def engine_answer(report: Report, *args, **kwargs):
    """`advise` for a single-layer job as the engine stores it (named after its layer)."""
    return single_layer(advise(report.curve, report.dataset.classes, report.model.d, *args, **kwargs),
                        report.model.layer)


pytestmark = pytest.mark.integration
TERMINAL = {"succeeded", "failed", "cancelled"}
PROBLEM = "application/problem+json"


def test_ready_against_real_services(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"database": f"ok (schema {migrate.head_revision()})", "broker": "ok"}


def test_submit_poll_succeed_and_recommend_from_the_stored_curve(client, wait, small_job, settings):
    r = client.post("/v1/jobs", json=small_job)
    assert r.status_code == 202 and r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    job_id = r.json()["id"]
    seen: set[tuple[str, str | None]] = set()
    deadline = time.monotonic() + 180
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        seen.add((job["status"], job["stage"]))
        if job["status"] in TERMINAL or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0 and job["started_at"] and job["finished_at"]
    assert any(status == "running" and stage for status, stage in seen), seen

    report = Report.model_validate(client.get(f"/v1/jobs/{job_id}/result").json())
    assert report.model.name == "resnet18" and report.dataset.spec == "digits"
    assert {p.fraction for p in report.curve} == {0.1, 0.5, 1.0}
    intervals = intervals_from_summary(report.summary)
    # Stored recommendations equal the engine's own for the job's deltas ...
    for stored in report.recommendations:
        again = engine_answer(report, stored.delta, stored.mode, stored.criterion, intervals=intervals)
        assert again.model_dump(exclude=PAIRED_ONLY) == stored.model_dump(exclude=PAIRED_ONLY)
    # ... and any δ is answered from the stored curve exactly as the engine computes it.
    for delta in (0.0, 0.01, 0.02, 0.05, 0.1, 0.5):
        for mode in ("relative", "absolute"):
            got = client.get(f"/v1/jobs/{job_id}/recommendation",
                             params={"delta": delta, "delta_mode": mode, "criterion": "worst_seed"})
            assert got.status_code == 200, got.text
            want = stored_answer(report.model_dump(mode="json"), delta, mode, "worst_seed") or engine_answer(
                report, delta, mode, "worst_seed", intervals=intervals)
            body = got.json()
            expected = want.model_dump(mode="json", by_alias=True)
            assert {k: body[k] for k in expected} == expected, (delta, mode)

    latest = client.get("/v1/recommendations", params={"model": "resnet18", "dataset": "digits", "delta": 0.05})
    assert latest.status_code == 200 and latest.json()["job_id"] == job_id

    from service.core.db import session_scope
    from service.core.models import CurvePointRow

    with session_scope(settings.db_url) as s:
        n = s.scalar(sa.select(sa.func.count()).select_from(CurvePointRow).where(CurvePointRow.job_id == job_id))
        assert s.get_bind().dialect.name == "postgresql" and n == len(report.curve)

    metrics = client.get("/metrics").text
    assert 'advisor_stage_duration_seconds_count{stage="extract"}' in metrics


def test_cancel_a_queued_and_a_running_job(client, wait, settings):
    # A job long enough to cancel while running (the whole digits set at 64 px, the paper's grid) ...
    long_job = {"model": {"name": "resnet18", "weights": "random"}, "dataset": {"spec": "digits"},
                "image_size": 64, "seeds": 5, "seed": int(uuid.uuid4().int % 1000)}
    running = client.post("/v1/jobs", json=long_job).json()
    # ... and one queued behind it on the single-slot worker.
    queued = client.post("/v1/jobs", json={**long_job, "seed": long_job["seed"] + 1}).json()
    r = client.post(f"/v1/jobs/{queued['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"

    deadline = time.monotonic() + 120
    while True:
        job = client.get(f"/v1/jobs/{running['id']}").json()
        if job["status"] == "running" and job["stage"] in ("load_data", "extract", "probe"):
            break
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.1)
    r = client.post(f"/v1/jobs/{running['id']}/cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    t0 = time.monotonic()
    done = wait(client, running["id"], TERMINAL, timeout=60)
    assert done["status"] == "cancelled", done
    assert time.monotonic() - t0 < 30, "a running job stops at its next checkpoint"
    assert done["error"] is None and done["finished_at"]

    # The worker now receives the cancelled job's message and must not start it.
    time.sleep(3)
    q = client.get(f"/v1/jobs/{queued['id']}").json()
    assert q["status"] == "cancelled" and q["started_at"] is None and q["attempts"] == 0
    assert client.post(f"/v1/jobs/{running['id']}/cancel").status_code == 200
    assert client.delete(f"/v1/jobs/{running['id']}").status_code == 204
    assert client.get(f"/v1/jobs/{running['id']}").status_code == 404


def test_idempotency_key(client, small_job):
    key = f"it-{uuid.uuid4()}"
    a = client.post("/v1/jobs", json=small_job, headers={"Idempotency-Key": key})
    b = client.post("/v1/jobs", json=small_job, headers={"Idempotency-Key": key})
    assert a.status_code == b.status_code == 202 and a.json()["id"] == b.json()["id"]
    c = client.post("/v1/jobs", json={**small_job, "seeds": 3}, headers={"Idempotency-Key": key})
    assert c.status_code == 409 and c.headers["content-type"] == PROBLEM
    client.post(f"/v1/jobs/{a.json()['id']}/cancel")


def test_pagination_across_pages(client, small_job, settings):
    # unique filter value, a file under the data root (ADVISOR_DATA_ROOTS); the jobs are cancelled at once
    unique = settings.data_path / f"{uuid.uuid4().hex}.npz"
    unique.parent.mkdir(parents=True, exist_ok=True)
    unique.write_bytes(b"")
    spec = f"npz:{unique}"
    ids = []
    for i in range(7):
        job = client.post("/v1/jobs", json={**small_job, "dataset": {"spec": spec}, "seeds": i + 1}).json()
        client.post(f"/v1/jobs/{job['id']}/cancel")
        ids.append(job["id"])
    seen, token, pages = [], None, 0
    while True:
        page = client.get("/v1/jobs", params={"dataset": spec, "page_size": 3,
                                              **({"page_token": token} if token else {})}).json()
        seen += [j["id"] for j in page["items"]]
        pages += 1
        token = page["next_page_token"]
        if not token:
            break
    assert pages == 3 and seen == list(reversed(ids))


def test_engine_error_fails_the_job(client, wait, small_job, settings):
    broken = settings.data_path / f"{uuid.uuid4().hex}.npz"  # under a root and there, but no npz archive
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"not an npz archive")
    job = client.post("/v1/jobs", json={**small_job, "dataset": {"spec": f"npz:{broken}"}}).json()
    done = wait(client, job["id"], TERMINAL, timeout=120)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "dataset_format" and done["error"]["field"] == "dataset.spec"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("post", "/v1/jobs", {"model": {"name": "resnet18"}, "dataset": {"spec": "digits"}, "fractions": [1.5]},
         422, "fractions"),
        ("post", "/v1/jobs", {"model": {"name": "resnet18"}, "dataset": {"spec": "s3://bucket/x"}}, 422,
         "dataset.spec"),
        ("post", "/v1/jobs", {"model": {"name": "no_such_net"}, "dataset": {"spec": "digits"}}, 422, "model.name"),
        ("get", "/v1/jobs?page_token=nope", None, 400, "page_token"),
        ("get", "/v1/jobs?model=res%00net", None, 422, "model"),  # Postgres cannot store NUL: was a 500
        ("post", "/v1/jobs", {"model": {"name": "resnet18"}, "dataset": {"spec": "digits"}, "layer": "a\x00"},
         422, "layer"),
        ("get", f"/v1/jobs/{uuid.uuid4()}", None, 404, None),
        ("get", f"/v1/jobs/{uuid.uuid4()}/recommendation", None, 404, None),
        ("get", "/v1/recommendations?model=resnet50&dataset=cifar100", None, 404, None),
    ],
)
def test_problem_json_errors(client, method, path, body, status, field):
    r = client.request(method.upper(), path, json=body)
    assert r.status_code == status and r.headers["content-type"] == PROBLEM, r.text
    problem = r.json()
    assert problem["status"] == status and problem["title"] and problem["type"]
    if field:
        assert field in [e["field"] for e in problem["errors"]]


def test_lost_message_is_requeued_and_runs(client, wait, settings, small_job):
    """The broker loses the message: the job is still queued in Postgres and maintenance re-sends it."""
    import datetime as dt

    from fastapi.testclient import TestClient

    from service.broker import CeleryQueue
    from service.core.db import session_scope
    from service.core.maintenance import run_maintenance_once
    from service.core.models import Job
    from service.main import create_app

    class LostQueue:  # the broker loses every message
        def enqueue(self, job_id: str) -> None:
            pass

    with TestClient(create_app(settings, queue=LostQueue(), maintenance=False)) as lossy:
        job = lossy.post("/v1/jobs", json={**small_job, "seeds": 4}).json()
    time.sleep(1)
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
    with session_scope(settings.db_url) as s:
        s.execute(sa.update(Job).where(Job.id == job["id"]).values(
            enqueued_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))
    broker = CeleryQueue(settings)
    try:
        assert run_maintenance_once(settings, broker)["requeued"] >= 1
    finally:
        broker.close()
    assert wait(client, job["id"], TERMINAL, timeout=120)["status"] == "succeeded"


def test_logistic_job_with_baselines_refinement_and_plots(client, wait, small_job):
    """The engine's newer options through the real worker and Postgres (JSONB) storage."""
    body = {**small_job, "probe": "logistic", "logistic_epochs": 2, "baselines": ["pca", "first_k"],
            "cka": "debiased", "refine_resolution": 0.1, "bootstrap": 200, "seeds": 2}
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    job = wait(client, job_id, TERMINAL, timeout=240)
    assert job["status"] == "succeeded", job
    report = Report.model_validate(client.get(f"/v1/jobs/{job_id}/result").json())
    assert report.probe == "logistic" and report.config.refine_resolution == 0.1
    kinds = {p.kind for p in report.curve}
    assert {"random", "pca", "first_k"} <= kinds <= {"random", "refinement", "pca", "first_k"}
    assert {b.kind for b in report.baselines} == {"pca", "first_k"}
    assert all(p.cka_debiased is not None for p in report.curve if p.kind == "random")
    intervals = intervals_from_summary(report.summary)
    assert intervals
    for stored in report.recommendations:
        again = engine_answer(report, stored.delta, stored.mode, stored.criterion, intervals=intervals)
        assert again.model_dump(exclude=PAIRED_ONLY) == stored.model_dump(exclude=PAIRED_ONLY)
    for delta in (0.01, 0.3):
        got = client.get(f"/v1/jobs/{job_id}/recommendation", params={"delta": delta}).json()
        want = (stored_answer(report.model_dump(mode="json"), delta, "relative", "mean") or engine_answer(
            report, delta, "relative", "mean", intervals=intervals,
        )).model_dump(mode="json", by_alias=True)
        assert {k: got[k] for k in want} == want
    png = client.get(f"/v1/jobs/{job_id}/plot.png")
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG\r\n\x1a\n")
    svg = client.get(f"/v1/jobs/{job_id}/plot.svg", params={"delta": [0.01, 0.3]})
    assert svg.headers["content-type"].startswith("image/svg+xml")
    import xml.etree.ElementTree as ET

    assert ET.fromstring(svg.content).tag.endswith("svg")


def test_every_curve_point_field_round_trips_through_postgres(settings, client):
    """store_report → curve_of on Postgres (JSONB `extra`) gives back exactly the engine's points."""
    import datetime as dt

    from redundancy.report import CurvePoint
    from service.core.db import session_scope
    from service.core.models import Job, JobResult
    from service.core.results import curve_of, store_report

    curve = [
        CurvePoint(fraction=0.1, k=5, seed=0, accuracy=0.1234567890123, per_class_accuracy=[0.1, 0.2], cka=0.3,
                   lam=1e-3, kind="random", cka_pair=0.987654321, cka_debiased=-0.0123),
        CurvePoint(fraction=0.15, k=8, seed=1, accuracy=0.5, per_class_accuracy=[0.5, 0.5], cka=0.4,
                   lam=None, kind="refinement", cka_pair=None, cka_debiased=0.41),
        CurvePoint(fraction=0.1, k=5, seed=0, accuracy=0.6, per_class_accuracy=[0.6, 0.6], cka=0.7,
                   kind="random_projection", metric="ndcg@10", query_gini=0.3141592653589793),
        CurvePoint(fraction=1.0, k=50, seed=0, accuracy=0.9, per_class_accuracy=[0.9, 0.9], cka=1.0,
                   lam=2.5, kind="random", cka_pair=1.0, cka_debiased=1.0),
    ]

    class _Report:
        class model:  # noqa: N801
            d = 50

        class dataset:  # noqa: N801
            classes = ["a", "b"]

        full_accuracy = 0.9
        fairness_groups = ["a", "b"]

        @staticmethod
        def model_dump(**_: object) -> dict:
            return {"curve": [p.model_dump(mode="json") for p in curve], "recommendations": []}

    job_id = str(uuid.uuid4())
    with session_scope(settings.db_url) as s:
        s.add(Job(id=job_id, owner="round-trip", status="succeeded", progress=1.0, request={}, config_hash="x",
                  model_name="m", dataset_spec="d", cancel_requested=False, enqueue_count=0, attempts=1,
                  created_at=dt.datetime.now(dt.UTC)))
        s.flush()
        store_report(s, job_id, _Report)
    try:
        with session_scope(settings.db_url) as s:
            assert s.get_bind().dialect.name == "postgresql"
            assert curve_of(s, job_id) == curve
    finally:
        with session_scope(settings.db_url) as s:
            s.delete(s.get(JobResult, job_id))
            s.execute(sa.text("DELETE FROM curve_points WHERE job_id = :i"), {"i": job_id})
            s.delete(s.get(Job, job_id))
