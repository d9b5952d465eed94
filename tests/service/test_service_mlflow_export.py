"""`advisor export ID --mlflow URI` (issue 22): a finished job logged to a real MLflow local file store,
read back with MLflow's own client: params, curve and recommendation metrics, tables, plot, artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.conftest import small_job
from tests.service.test_service_verdict import report_with_baselines

mlflow = pytest.importorskip("mlflow")


def test_export_logs_params_metrics_tables_plot_and_artifacts(
    harness: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from advisor_client import Advisor  # lazy: the client package is optional for the service tests
    from advisor_client.mlflow_export import export_to_mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    harness.engine.report_fn = report_with_baselines
    job = harness.submit(small_job(fractions=[0.1, 0.25, 0.5, 1.0], deltas=[0.05, 0.1]))
    harness.run_all()

    def forward(req: httpx.Request) -> httpx.Response:  # the client's requests, served by the app in-process
        r = harness.client.request(req.method, req.url.path, params=req.url.params, content=req.content)
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)

    uri = (tmp_path / "mlruns").as_uri()
    with Advisor("http://testserver", transport=httpx.MockTransport(forward)) as advisor:
        run_id = export_to_mlflow(advisor, job["id"], uri, experiment="t")
    client = mlflow.tracking.MlflowClient(uri)
    run = client.get_run(run_id)
    report = harness.client.get(f"/v1/jobs/{job['id']}/result").json()
    assert run.data.params["dataset.spec"] == "digits" and json.loads(run.data.params["deltas"]) == [0.05, 0.1]
    assert run.data.tags["advisor.job_id"] == job["id"]
    assert run.data.metrics["full_accuracy"] == pytest.approx(report["full_accuracy"])
    history = client.get_metric_history(run_id, "curve.random.accuracy_mean")
    assert sorted(m.step for m in history) == sorted(s["k"] for s in report["summary"])
    for rec in report["recommendations"]:
        tag = f"d{rec['delta']:g}"
        assert run.data.metrics[f"{tag}.k"] == rec["k"]
        assert run.data.metrics[f"{tag}.verdict_k"] == rec["verdict"]["k"]
        assert run.data.tags[f"advisor.{tag}.verdict"] == rec["verdict"]["method"]
        assert run.data.metrics[f"{tag}.pca.k"] == next(m["k"] for m in rec["methods"] if m["method"] == "pca")

    def listed(path: str) -> set[str]:
        return {a.path for a in client.list_artifacts(run_id, path)}

    assert listed("plots") == {"plots/plot.png"}
    assert {"tables/curve.json", "tables/methods_d0.05.json"} <= listed("tables")
    assert "recommendations/d0.1.json" in listed("recommendations")
    files = listed("artifacts")
    for method in ("random_subset", "first_k", "pca"):
        assert {f"artifacts/d0.05_{method}.safetensors", f"artifacts/d0.05_{method}.onnx"} <= files
    local = Path(client.download_artifacts(run_id, "tables/methods_d0.05.json", str(tmp_path / "dl")))
    table = json.loads(local.read_text())
    assert [row[0] for row in table["data"]] == ["random_subset", "first_k", "pca"]
