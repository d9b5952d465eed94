"""The job option `mlflow` (issue 22): a job submitted with `{tracking_uri, experiment}` is logged by its
worker when it succeeds, to a real MLflow local file store read back with MLflow's own client, exactly as
`advisor export ID --mlflow URI` logs it (the same core, `advisor_client.mlflow_log`); a failure to log
leaves the job succeeded with the failure on the job; a URI the server will not write to, or a server
without MLflow, is a 422 naming the field."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service.core import mlflow_runs
from service.main import create_app
from tests.service.conftest import small_job
from tests.service.test_service_verdict import report_with_baselines


def _body(uri: str, **over: Any) -> dict[str, Any]:
    return small_job(fractions=[0.1, 0.25, 0.5, 1.0], deltas=[0.05, 0.1],
                     mlflow={"tracking_uri": uri, "experiment": "on-success"}, **over)


def _export(harness: Any, job_id: str, uri: str) -> str:
    """The client's `advisor export`, its requests served by the app in-process."""
    from advisor_client import Advisor  # lazy: the client package is optional for the service tests
    from advisor_client.mlflow_export import export_to_mlflow

    def forward(req: httpx.Request) -> httpx.Response:
        r = harness.client.request(req.method, req.url.path, params=req.url.params, content=req.content)
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)

    with Advisor("http://testserver", transport=httpx.MockTransport(forward)) as advisor:
        return export_to_mlflow(advisor, job_id, uri, experiment="exported")


def test_a_succeeded_job_is_logged_by_its_worker_as_the_export_logs_it(
    harness: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    harness.engine.report_fn = report_with_baselines
    uri = (harness.settings.data_path / "mlruns").as_uri()  # under the server's data roots
    job = harness.submit(_body(uri))
    assert job["mlflow"] == {"tracking_uri": uri, "experiment": "on-success", "state": "pending", "run_id": None,
                             "error": None, "logged_at": None}
    assert harness.run_all() == ["succeeded"]

    done = harness.client.get(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "succeeded"
    assert done["mlflow"]["state"] == "logged" and done["mlflow"]["error"] is None, done["mlflow"]
    run_id = done["mlflow"]["run_id"]
    client = mlflow.tracking.MlflowClient(uri)
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "on-success"
    report = harness.client.get(f"/v1/jobs/{job['id']}/result").json()
    assert run.data.tags["advisor.job_id"] == job["id"]
    assert run.data.params["dataset.spec"] == "digits" and json.loads(run.data.params["deltas"]) == [0.05, 0.1]
    assert "mlflow.tracking_uri" not in run.data.params  # the option is the service's, not the analysis config
    assert run.data.metrics["full_accuracy"] == pytest.approx(report["full_accuracy"])
    for rec in report["recommendations"]:
        tag = f"d{rec['delta']:g}"
        assert run.data.metrics[f"{tag}.k"] == rec["k"]
        assert run.data.metrics[f"{tag}.verdict_k"] == rec["verdict"]["k"]
        assert run.data.tags[f"advisor.{tag}.verdict"] == rec["verdict"]["method"]

    def listed(rid: str, path: str) -> set[str]:
        return {a.path for a in client.list_artifacts(rid, path)}

    assert listed(run_id, "plots") == {"plots/plot.png"}
    assert {"tables/curve.json", "tables/methods_d0.05.json", "tables/methods_d0.1.json"} <= listed(run_id, "tables")
    table = json.loads(Path(client.download_artifacts(run_id, "tables/methods_d0.05.json",
                                                      str(tmp_path / "dl"))).read_text())
    assert [row[0] for row in table["data"]] == ["random_subset", "first_k", "pca"]
    for method in ("random_subset", "first_k", "pca"):
        assert f"artifacts/d0.05_{method}.safetensors" in listed(run_id, "artifacts")

    # the client's export of the same job: the same params, metrics, tags and files (one core logs both)
    exported = client.get_run(_export(harness, job["id"], uri))
    assert exported.data.params == run.data.params
    assert exported.data.metrics == run.data.metrics
    assert {k: v for k, v in exported.data.tags.items() if k.startswith("advisor.")} == \
        {k: v for k, v in run.data.tags.items() if k.startswith("advisor.")}
    for path in ("plots", "tables", "recommendations", "artifacts"):
        assert listed(exported.info.run_id, path) == listed(run_id, path), path
    rec_path = "recommendations/d0.05.json"

    def read(rid: str, where: str) -> Any:
        return json.loads(Path(client.download_artifacts(rid, rec_path, str(tmp_path / where))).read_text())

    assert read(run_id, "a") == read(exported.info.run_id, "b")


def test_a_failure_to_log_leaves_the_job_succeeded_and_is_recorded(
    harness: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    blocker = harness.settings.data_path / "mlruns"  # a file where the store's directory would be
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a directory")
    job = harness.submit(_body(blocker.as_uri()))
    with caplog.at_level(logging.WARNING, logger="service.mlflow"):
        assert harness.run_all() == ["succeeded"]
    done = harness.client.get(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "succeeded" and done["error"] is None
    assert done["mlflow"]["state"] == "failed" and done["mlflow"]["run_id"] is None
    assert done["mlflow"]["error"] and done["mlflow"]["logged_at"]
    assert any("logging to MLflow failed" in r.getMessage() and job["id"] in r.getMessage() for r in caplog.records)
    assert harness.client.get(f"/v1/jobs/{job['id']}/result").status_code == 200


def test_a_job_that_does_not_succeed_is_not_logged(harness: Any) -> None:
    harness.engine.raise_ = RuntimeError("boom")
    job = harness.submit(_body((harness.settings.data_path / "mlruns").as_uri()))
    assert harness.run_all() == ["failed"]
    assert harness.client.get(f"/v1/jobs/{job['id']}").json()["mlflow"]["state"] == "skipped"
    assert not (harness.settings.data_path / "mlruns").exists()


@pytest.mark.parametrize(("uri", "says"), [
    ("ftp://example.com/mlruns", "scheme 'ftp' is not supported"),
    ("databricks://profile", "scheme 'databricks' is not supported"),
    ("file:///etc/mlruns", "not under an allowed root"),
    ("/etc/mlruns", "not under an allowed root"),
    ("mlruns", "relative"),
    ("file://otherhost/mlruns", "must be on this server"),
    ("http://127.0.0.1:5000", "loopback"),
    ("https://user:secret@mlflow.example.com", "credentials"),
])
def test_a_tracking_uri_the_server_will_not_use_is_a_422_naming_it(harness: Any, uri: str, says: str) -> None:
    pytest.importorskip("mlflow")
    r = harness.client.post("/v1/jobs", json=_body(uri))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    [err] = r.json()["errors"]
    assert err["field"] == "mlflow.tracking_uri" and says in err["reason"], err
    assert harness.client.get("/v1/jobs").json()["items"] == []


def test_a_private_tracking_server_needs_the_setting(tmp_path: Path, settings_factory: Any,
                                                     recording_queue: Any) -> None:
    pytest.importorskip("mlflow")
    s = settings_factory(tmp_path, mlflow_allow="loopback")
    with TestClient(create_app(s, queue=recording_queue, maintenance=False)) as client:
        r = client.post("/v1/jobs", json=_body("http://127.0.0.1:5000"))
        assert r.status_code == 202, r.text
        assert r.json()["mlflow"]["tracking_uri"] == "http://127.0.0.1:5000"


def test_the_option_is_shaped_by_pydantic(harness: Any) -> None:
    r = harness.client.post("/v1/jobs", json=small_job(mlflow={"experiment": "x"}))
    assert r.status_code == 422
    assert any(e["field"] == "mlflow.tracking_uri" for e in r.json()["errors"]), r.text
    r = harness.client.post("/v1/jobs", json=small_job(mlflow={"tracking_uri": "/x", "colour": "blue"}))
    assert r.status_code == 422 and any(e["field"] == "mlflow.colour" for e in r.json()["errors"]), r.text


def test_a_server_without_mlflow_refuses_the_option(harness: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "mlflow" else real(name, *args)

    monkeypatch.setattr(mlflow_runs.importlib.util, "find_spec", find_spec)
    r = harness.client.post("/v1/jobs", json=_body((harness.settings.data_path / "mlruns").as_uri()))
    assert r.status_code == 422, r.text
    [err] = r.json()["errors"]
    assert err["field"] == "mlflow" and err["code"] == "mlflow_unavailable" and "not installed" in err["reason"]
    assert harness.submit(small_job())["mlflow"] is None  # a job without the option is unaffected


def test_an_idempotent_replay_must_ask_for_the_same_logging(harness: Any) -> None:
    pytest.importorskip("mlflow")
    uri = (harness.settings.data_path / "mlruns").as_uri()
    first = harness.submit(_body(uri), **{"Idempotency-Key": "k1"})
    assert harness.submit(_body(uri), **{"Idempotency-Key": "k1"})["id"] == first["id"]
    other = _body(uri)
    other["mlflow"]["experiment"] = "elsewhere"
    assert harness.client.post("/v1/jobs", json=other, headers={"Idempotency-Key": "k1"}).status_code == 409


def test_the_client_submit_command_builds_the_option() -> None:
    import argparse

    from advisor_client.cli import BadInput, add_commands, submit_body  # lazy: the client package is optional

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    base = ["submit", "--model", "resnet18", "--dataset", "digits"]
    args = parser.parse_args([*base, "--mlflow", "file:///data/mlruns", "--mlflow-experiment", "e"])
    assert submit_body(args)["mlflow"] == {"tracking_uri": "file:///data/mlruns", "experiment": "e"}
    assert "mlflow" not in submit_body(parser.parse_args(base))
    with pytest.raises(BadInput):
        submit_body(parser.parse_args([*base, "--mlflow-experiment", "e"]))
