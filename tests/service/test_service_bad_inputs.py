"""Every bad input gets a problem+json answer naming the field; never a 500."""

from __future__ import annotations

import pytest

PROBLEM = "application/problem+json"


def _fields(r) -> list[str]:
    return [e["field"] for e in r.json().get("errors", [])]


def _assert_problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"]
    return body


@pytest.mark.parametrize(
    ("override", "field", "reason_part"),
    [
        ({"fractions": [0.1, 1.5]}, "fractions", "outside (0, 1]"),
        ({"fractions": [0.0]}, "fractions", "outside (0, 1]"),
        ({"fractions": []}, "fractions", "at least 1"),
        ({"seeds": 0}, "seeds", "greater than or equal to 1"),
        ({"deltas": [1.2]}, "deltas", "outside [0, 1)"),
        ({"delta_mode": "percent"}, "delta_mode", "relative"),
        ({"criterion": "median"}, "criterion", "mean"),
        ({"probe": "svm"}, "probe", "ridge"),
        ({"probe": "svm"}, "probe", "logistic"),
        ({"baselines": ["lda"]}, "baselines.0", "pca"),
        ({"baselines": ["pca", "lda"]}, "baselines.1", "random_projection"),
        ({"baselines": "pca"}, "baselines", "valid list"),
        ({"cka": "x"}, "cka", "debiased"),
        ({"refine_resolution": 0}, "refine_resolution", "greater than 0"),
        ({"refine_resolution": 1.0}, "refine_resolution", "less than 1"),
        ({"bootstrap": -1}, "bootstrap", "greater than or equal to 0"),
        ({"bootstrap": 10**6}, "bootstrap", "less than or equal to 100000"),
        ({"ci_level": 0.5}, "ci_level", "greater than 0.5"),
        ({"ci_level": 1.0}, "ci_level", "less than 1"),
        ({"logistic_epochs": 0}, "logistic_epochs", "greater than or equal to 1"),
        ({"logistic_lr": 0}, "logistic_lr", "greater than 0"),
        ({"logistic_weight_decay": -0.1}, "logistic_weight_decay", "greater than or equal to 0"),
        ({"logistic_batch_size": 0}, "logistic_batch_size", "greater than or equal to 1"),
        ({"image_size": 8}, "image_size", "greater than or equal to 16"),
        ({"batch_size": 0}, "batch_size", "greater than or equal to 1"),
        ({"val_fraction": 0.9}, "val_fraction", "less than 0.5"),
        ({"dataset": {"spec": "digits", "max_train": 3}}, "dataset.max_train", "greater than or equal to 10"),
        ({"dataset": {"spec": "ftp://host/x"}}, "dataset.spec", "unknown dataset"),
        ({"dataset": {"spec": "mnist"}}, "dataset.spec", "unknown dataset"),
        ({"dataset": {"spec": "npz:"}}, "dataset.spec", "needs a path"),
        ({"dataset": {"spec": ""}}, "dataset.spec", "at least 1"),
        ({"dataset": {}}, "dataset.spec", "required"),
        ({"model": {"name": "resnet_999"}}, "model.name", "unknown timm model"),
        ({"model": {"name": "resnet18", "weights": "bundled"}}, "model.weights", "bundled weights exist only"),
        ({"model": {"name": "resnet18", "weights": "/tmp/ckpt.txt"}}, "model.weights", "checkpoint path"),
        ({"model": {"name": "resnet18", "color": "red"}}, "model.color", "Extra inputs"),
        ({"unknown_field": 1}, "unknown_field", "Extra inputs"),
        ({"seeds": "many"}, "seeds", "valid integer"),
        ({"task": "ranking"}, "task", "retrieval"),
        ({"task": "retrieval", "metric": "ndcg@5"}, "metric", "ndcg@10"),
        ({"task": "retrieval", "metric": "accuracy"}, "metric", "not 'accuracy'"),
        ({"metric": "recall@10"}, "metric", "needs task 'retrieval'"),
        ({"similarity": "dot"}, "similarity", "task 'retrieval' only"),
        ({"task": "retrieval", "similarity": "l2"}, "similarity", "cosine"),
    ],
)
def test_bad_job_bodies_are_422_naming_the_field(client, job_body, override, field, reason_part):
    r = client.post("/v1/jobs", json=job_body(**override))
    body = _assert_problem(r, 422)
    assert field in _fields(r), body
    reasons = " ".join(e["reason"] for e in body["errors"] if e["field"] == field)
    assert reason_part in reasons, body


def test_missing_model_is_422(client):
    r = client.post("/v1/jobs", json={"dataset": {"spec": "digits"}})
    assert "model" in _fields(_assert_problem(r, 422) and r)


def test_unknown_model_suggests_close_names(client, job_body):
    r = client.post("/v1/jobs", json=job_body(model={"name": "resnet181", "weights": "random"}))
    body = _assert_problem(r, 422)
    assert "did you mean" in body["errors"][0]["reason"] and body["code"] == "unknown_model"


def test_malformed_json_is_400_naming_the_body(client):
    r = client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    body = _assert_problem(r, 400)
    assert _fields(r) == ["body"] and "position 1" in body["detail"]


def test_body_not_an_object_is_422(client):
    _assert_problem(client.post("/v1/jobs", json=[1, 2]), 422)


def test_nothing_is_stored_or_enqueued_for_a_bad_request(harness, job_body):
    harness.client.post("/v1/jobs", json=job_body(fractions=[2.0]))
    assert harness.sent == []
    assert harness.client.get("/v1/jobs").json()["items"] == []


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/v1/jobs?page_size=0", 422, "page_size"),
        ("/v1/jobs?page_size=1000", 422, "page_size"),
        ("/v1/jobs?page_token=garbage!!", 400, "page_token"),
        ("/v1/jobs?page_token=eyJ4IjoxfQ", 400, "page_token"),
        ("/v1/jobs?status=done", 422, "status"),
        ("/v1/recommendations?dataset=digits", 422, "model"),
        ("/v1/recommendations?model=resnet18", 422, "dataset"),
        ("/v1/recommendations?model=resnet18&dataset=digits&delta=abc", 422, "delta"),
        ("/v1/catalog/models?limit=0", 422, "limit"),
    ],
)
def test_bad_query_parameters(client, path, status, field):
    r = client.get(path)
    body = _assert_problem(r, status)
    assert field in _fields(r), body
    assert all(e["location"] == "query" for e in body["errors"])


@pytest.mark.parametrize("delta", ["1.5", "-0.1", "1"])
def test_recommendation_delta_out_of_range_is_422(harness, job_body, delta):
    job = harness.submit(job_body())
    harness.run_all()
    r = harness.client.get(f"/v1/jobs/{job['id']}/recommendation?delta={delta}")
    assert _fields(r) == ["delta"] and r.status_code == 422


@pytest.mark.parametrize("query", ["delta_mode=percent", "criterion=median"])
def test_recommendation_bad_mode_or_criterion_is_422(harness, job_body, query):
    job = harness.submit(job_body())
    harness.run_all()
    r = harness.client.get(f"/v1/jobs/{job['id']}/recommendation?{query}")
    assert r.status_code == 422 and _fields(r) == [query.split("=")[0]]


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("get", ""), ("get", "/result"), ("get", "/recommendation"), ("post", "/cancel"), ("delete", "")],
)
def test_unknown_job_is_404_problem(client, method, suffix):
    r = getattr(client, method)(f"/v1/jobs/00000000-0000-0000-0000-000000000000{suffix}")
    body = _assert_problem(r, 404)
    assert body["type"].endswith("job-not-found") and "GET /v1/jobs" in body["hint"]


def test_recommendation_of_unfinished_job_is_409(harness, job_body):
    job = harness.submit(job_body())
    r = harness.client.get(f"/v1/jobs/{job['id']}/recommendation")
    body = _assert_problem(r, 409)
    assert body["job_status"] == "queued"


def test_unknown_route_and_wrong_method_are_problems(client):
    _assert_problem(client.get("/v1/nothing"), 404)
    _assert_problem(client.put("/v1/jobs"), 405)


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/v1/jobs", {"GET", "POST"}),
    ("DELETE", "/v1/datasets", {"GET", "POST"}),
    ("PUT", "/v1/datasets/" + "a" * 64, {"GET", "DELETE"}),
    ("POST", "/healthz", {"GET"}),
    ("POST", "/ui/static/ui.css", {"GET", "HEAD"}),
])
def test_a_405_lists_the_methods_the_path_serves_in_allow(client, method, path, allowed):
    """RFC 9110 15.5.6: a 405 must carry an Allow header naming the resource's methods."""
    r = client.request(method, path)
    body = _assert_problem(r, 405)
    listed = {m.strip() for m in r.headers.get("allow", "").split(",") if m.strip()}
    assert listed == allowed, r.headers.get("allow")
    assert body["instance"] == path


def test_idempotency_key_too_long_is_422(client, job_body):
    r = client.post("/v1/jobs", json=job_body(), headers={"Idempotency-Key": "x" * 300})
    assert "Idempotency-Key" in _fields(_assert_problem(r, 422) and r)
