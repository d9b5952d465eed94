"""/metrics through prometheus_client, parsed by its own text parser and checked against the jobs the API
lists; the OpenAPI document's operation ids, tags and binary responses."""

from __future__ import annotations

import datetime as dt

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.api.metrics import JOB_BUCKETS, histogram_buckets

OPERATION_IDS = {
    ("post", "/v1/jobs"): "submitJob",
    ("get", "/v1/jobs"): "listJobs",
    ("get", "/v1/jobs/{job_id}"): "getJob",
    ("delete", "/v1/jobs/{job_id}"): "deleteJob",
    ("get", "/v1/jobs/{job_id}/artifact"): "getArtifact",
    ("get", "/v1/jobs/{job_id}/artifact/card"): "getArtifactCard",
    ("post", "/v1/jobs/{job_id}/cancel"): "cancelJob",
    ("get", "/v1/jobs/{job_id}/result"): "getResult",
    ("get", "/v1/jobs/{job_id}/recommendation"): "getRecommendation",
    ("get", "/v1/jobs/{job_id}/plot.png"): "getPlotPng",
    ("get", "/v1/jobs/{job_id}/plot.svg"): "getPlotSvg",
    ("get", "/v1/jobs/{job_id}/deliveries"): "listDeliveries",
    ("get", "/v1/webhooks/secret"): "getWebhookSecret",
    ("get", "/v1/recommendations"): "getLatestRecommendation",
    ("get", "/v1/catalog/models"): "listModels",
    ("get", "/v1/catalog/datasets"): "listDatasets",
    ("post", "/v1/datasets"): "uploadDataset",
    ("get", "/v1/datasets"): "listUploadedDatasets",
    ("get", "/v1/datasets/{upload_id}"): "getUploadedDataset",
    ("delete", "/v1/datasets/{upload_id}"): "deleteUploadedDataset",
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("get", "/metrics"): "metrics",
}


def _scrape(client) -> dict:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def _samples(family, suffix: str, label: str) -> dict[str, float]:
    return {s.labels[label]: s.value for s in family.samples if s.name == family.name + suffix}


def test_metrics_parse_and_agree_with_the_database(harness, job_body, engine):
    a = harness.submit(job_body())
    harness.submit(job_body(seeds=3))
    harness.run_all()
    engine.raise_ = RuntimeError("boom")
    harness.submit(job_body(seeds=4))
    harness.run_all()  # fails
    harness.submit(job_body(seeds=5))  # stays queued
    harness.client.get(f"/v1/jobs/{a['id']}")
    fam = _scrape(harness.client)

    jobs = harness.client.get("/v1/jobs").json()["items"]
    by_status = {s: sum(j["status"] == s for j in jobs) for s in ("queued", "running", "succeeded", "failed",
                                                                   "cancelled")}
    assert {k: int(v) for k, v in _samples(fam["advisor_jobs"], "", "status").items()} == by_status
    assert by_status["succeeded"] == 2 and by_status["failed"] == 1 and by_status["queued"] == 1
    assert fam["advisor_queue_depth"].samples[0].value == 1

    # Job durations: the histogram's buckets are the obvious count of finished_at - started_at <= le.
    def secs(j: dict) -> float:
        started, finished = (dt.datetime.fromisoformat(j[k]) for k in ("started_at", "finished_at"))
        return (finished - started).total_seconds()

    succeeded = [secs(j) for j in jobs if j["status"] == "succeeded"]
    buckets = {(s.labels["status"], s.labels["le"]): s.value for s in fam["advisor_job_duration_seconds"].samples
               if s.name.endswith("_bucket")}
    for le in [*JOB_BUCKETS, float("inf")]:
        key = "+Inf" if le == float("inf") else repr(float(le))
        assert buckets[("succeeded", key)] == sum(x <= le for x in succeeded)
    assert _samples(fam["advisor_job_duration_seconds"], "_sum", "status")["succeeded"] == pytest.approx(
        sum(succeeded), abs=1e-3)
    assert _samples(fam["advisor_job_duration_seconds"], "_count", "status") == {
        "succeeded": 2.0, "failed": 1.0, "cancelled": 0.0}

    # Stage durations: the fake engine's report says extract took 0.02 s in each succeeded job.
    assert _samples(fam["advisor_stage_duration_seconds"], "_count", "stage")["extract"] >= 2
    assert _samples(fam["advisor_stage_duration_seconds"], "_sum", "stage")["probe"] == pytest.approx(0.02)

    latency = [s for s in fam["advisor_http_request_duration_seconds"].samples if s.name.endswith("_count")]
    got = {(s.labels["method"], s.labels["route"], s.labels["status"]): s.value for s in latency}
    assert got[("GET", "/v1/jobs/{job_id}", "200")] == 1 and got[("POST", "/v1/jobs", "202")] == 4
    assert not any(s.labels["route"] == "/metrics" for s in latency)
    assert _samples(fam["advisor_webhook_deliveries"], "", "outcome") == {"pending": 0, "delivered": 0, "failed": 0}
    assert fam["advisor_up"].samples[0].value == 1


def test_histogram_buckets_match_the_obvious_count():
    values = [0.0, 1.0, 1.0, 2.5, 7.0, 1e9]
    bounds = (1, 2, 5, 10)
    want = [(repr(float(b)), float(sum(v <= b for v in values))) for b in bounds] + [("+Inf", 6.0)]
    assert histogram_buckets(values, bounds) == want
    assert histogram_buckets([], bounds)[-1] == ("+Inf", 0.0)


def test_every_operation_has_its_stable_id_a_tag_and_a_summary(client):
    spec = client.get("/openapi.json").json()
    got = {(m, p): op["operationId"] for p, ops in spec["paths"].items() for m, op in ops.items()}
    assert got == OPERATION_IDS
    for ops in spec["paths"].values():
        for op in ops.values():
            assert op.get("tags") and op.get("summary"), op["operationId"]
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert body["examples"]["small"]["value"]["model"]["weights"] == "random"
    assert "callback_url" in spec["components"]["schemas"]["JobCreate"]["properties"]


def test_binary_and_problem_responses_are_declared_for_generators(client):
    spec = client.get("/openapi.json").json()
    for path, media in [("/v1/jobs/{job_id}/plot.png", "image/png"), ("/v1/jobs/{job_id}/plot.svg", "image/svg+xml")]:
        content = spec["paths"][path]["get"]["responses"]["200"]["content"]
        binary = {"schema": {"type": "string", "format": "binary"}}
        assert content == {media: binary, "application/octet-stream": binary}
    problem = spec["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]["404"]["content"]
    assert next(iter(problem)) == "application/problem+json"
    assert problem["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_plots_answer_as_octet_stream_when_asked(harness, job_body):
    job = harness.submit(job_body())
    harness.run_all()
    url = f"/v1/jobs/{job['id']}/plot.png"
    native = harness.client.get(url)
    assert native.headers["content-type"] == "image/png"
    raw = harness.client.get(url, headers={"Accept": "application/octet-stream"})
    assert raw.headers["content-type"] == "application/octet-stream" and raw.content == native.content
    both = harness.client.get(url, headers={"Accept": "image/*, application/octet-stream"})
    assert both.headers["content-type"] == "image/png"
