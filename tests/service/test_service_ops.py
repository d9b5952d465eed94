"""Health, readiness, metrics, catalog and the OpenAPI document."""

from __future__ import annotations


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_readyz_ok_with_migrated_db(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["database"].startswith("ok (schema ")


def test_readyz_503_without_schema(tmp_path, settings_factory, recording_queue):
    from fastapi.testclient import TestClient

    from service.core.config import Settings
    from service.main import create_app

    s = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'empty.sqlite'}", maintenance_interval=0)
    with TestClient(create_app(s, queue=recording_queue)) as client:
        r = client.get("/readyz")
    assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
    assert "advisor db upgrade" in r.json()["checks"]["database"]


def test_readyz_checks_the_embedded_broker(tmp_path, settings_factory):
    from fastapi.testclient import TestClient

    from service.main import create_app

    s = settings_factory(tmp_path)  # no BROKER_URL: the SQLite broker under DATA_DIR
    with TestClient(create_app(s, maintenance=False)) as client:
        r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["broker"] == "ok"


def test_readyz_503_when_broker_unreachable(tmp_path, settings_factory):
    from fastapi.testclient import TestClient

    from service.main import create_app

    s = settings_factory(tmp_path, broker_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(s, maintenance=False)) as client:
        r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["broker"].startswith("error")


def test_metrics_prometheus_text(harness, job_body):
    harness.submit(job_body())
    done = harness.submit(job_body(seeds=3))
    harness.sent.remove(done["id"])
    harness.run(done["id"])
    harness.client.get("/v1/jobs")
    r = harness.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'advisor_jobs{status="queued"} 1' in text
    assert 'advisor_jobs{status="succeeded"} 1' in text
    assert "advisor_queue_depth 1" in text
    assert 'advisor_stage_duration_seconds_count{stage="extract"} 1' in text
    assert 'advisor_http_request_duration_seconds_count{method="GET",route="/v1/jobs",status="200"} 1' in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.split(" ")) == 2, line


def test_catalog_models(client):
    r = client.get("/v1/catalog/models", params={"q": "lite0"})
    assert r.status_code == 200
    items = r.json()["items"]
    bundled = [m for m in items if m["source"] == "bundled"]
    assert bundled == [{"name": "tf_efficientnet_lite0", "weights": "bundled", "source": "bundled",
                        "available": True, "detail": bundled[0]["detail"]}]
    timm_names = {m["name"] for m in items if m["source"] == "timm"}
    assert {"tf_efficientnet_lite0", "efficientnet_lite0"} <= timm_names
    r = client.get("/v1/catalog/models", params={"q": "resnet*", "limit": 3})
    assert r.json()["truncated"] is True
    assert len([m for m in r.json()["items"] if m["source"] == "timm"]) == 3


def test_catalog_lists_local_checkpoints(client, settings):
    ckpt = settings.checkpoints_dir / "resnet18" / "mine.safetensors"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_bytes(b"")
    items = client.get("/v1/catalog/models", params={"q": "resnet18"}).json()["items"]
    local = [m for m in items if m["source"] == "checkpoint"]
    assert local and local[0]["weights"] == str(ckpt) and local[0]["available"] is True


def test_catalog_datasets(client):
    items = {d["spec"]: d for d in client.get("/v1/catalog/datasets").json()["items"]}
    assert items["digits"]["available"] is True and items["digits"]["classes"] == 10
    assert {"npz:", "imagefolder:", "cifar10"} <= set(items)


def test_openapi_documents_every_endpoint_with_examples(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/v1/jobs", "post"), ("/v1/jobs", "get"), ("/v1/jobs/{job_id}", "get"),
        ("/v1/jobs/{job_id}", "delete"), ("/v1/jobs/{job_id}/cancel", "post"),
        ("/v1/jobs/{job_id}/result", "get"), ("/v1/jobs/{job_id}/recommendation", "get"),
        ("/v1/recommendations", "get"), ("/v1/catalog/models", "get"), ("/v1/catalog/datasets", "get"),
        ("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get"),
    ]:
        assert method in paths[path], (path, method)
    post = paths["/v1/jobs"]["post"]
    examples = post["requestBody"]["content"]["application/json"]["examples"]
    assert examples["demo"]["value"]["model"]["weights"] == "bundled"
    assert "422" in post["responses"] and "409" in post["responses"]
    assert client.get("/docs").status_code == 200
