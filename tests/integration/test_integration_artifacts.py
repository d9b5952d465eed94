"""Issue 12 end to end: a real Celery worker and real Postgres; real digits and real CIFAR-10 images.

The artifact downloaded over HTTP, loaded with `redundancy.deploy.load_artifact` and applied to the
test features the worker stored in its feature cache, reproduces the reported accuracy of its seed
exactly (same predictions as the probe); and the multi-dataset recommendation answers for digits and a
CIFAR-10 subset with the binding dataset named, as `recommend_multitask` computes it on their reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from redundancy.deploy import TaskCurve, load_artifact, recommend_multitask
from redundancy.pipeline import feature_key, make_transform, prepare_data
from redundancy.report import Report
from redundancy.sources.extraction import Features
from redundancy.sources.models import load_model
from service.core.db import session_scope
from service.core.models import JobStats
from service.core.runtime import make_runtime

pytestmark = pytest.mark.integration

JOB: dict[str, Any] = {
    "model": {"name": "resnet18", "weights": "random"},
    "dataset": {"spec": "digits", "max_train": 300, "max_test": 100},
    "image_size": 32,
    "fractions": [0.05, 0.1, 0.2, 0.5, 1.0],
    "seeds": 3,
    "deltas": [0.05],
    "baselines": [],
    "bootstrap": 0,
}


def _run(client: Any, wait: Any, **over: Any) -> tuple[str, Report]:
    r = client.post("/v1/jobs", json={**JOB, **over})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    job = wait(client, job_id, {"succeeded", "failed", "cancelled"}, timeout=400)
    assert job["status"] == "succeeded", job
    return job_id, Report.model_validate(client.get(f"/v1/jobs/{job_id}/result").json())


def _stored_features(report: Report, settings: Any) -> Features:
    """The features the worker cached for this job, found by the engine's own cache key."""
    config = report.config
    loaded = load_model(config.model.name, config.model.weights, seed=config.seed)
    _, data_cfg = make_transform(loaded, config.image_size)
    data = prepare_data(config, make_runtime(settings))
    return Features.load(settings.cache_dir / feature_key(config, loaded, data, data_cfg))


@pytest.mark.parametrize("lambda_select", ["gcv", "val"])
def test_artifact_over_http_reproduces_the_reported_accuracy(
    client: Any, wait: Any, settings: Any, tmp_path: Path, lambda_select: str
) -> None:
    job_id, report = _run(client, wait, lambda_select=lambda_select)
    features = _stored_features(report, settings)
    for delta in (0.05, 0.2):  # the job's own δ and a new one
        r = client.get(f"/v1/jobs/{job_id}/artifact", params={"delta": delta})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/octet-stream" and r.headers["etag"]
        path = tmp_path / f"head-{delta}.safetensors"
        path.write_bytes(r.content)
        art = load_artifact(path, d=report.model.d, layer=report.model.layer)
        sub = art.metadata["subset"]
        point = next(p for p in report.curve if p.kind == "random" and p.k == art.k and p.seed == sub["seed"])
        pred = art.predict(features.x_test)
        assert float((pred == features.y_test).mean()) == point.accuracy == sub["test_accuracy"]
        assert sub["selection"] == lambda_select and sub["selection_score"] == point.selection_score
        assert client.get(f"/v1/jobs/{job_id}/artifact", params={"delta": delta},
                          headers={"If-None-Match": r.headers["etag"]}).status_code == 304

    with session_scope(settings.db_url) as s:
        row = s.get(JobStats, job_id)
        assert row is not None and row.path is not None
        stats_dir = Path(row.path).parent
    assert stats_dir.is_dir() and stats_dir.parent == settings.artifact_path
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert not stats_dir.exists()


@pytest.fixture(scope="module")
def cifar_subset(settings: Any, shared_data_dir: Path) -> str:
    """A small CIFAR-10 npz (first 400 train / 200 test images of the shared file) the worker can read:
    under the data directory, the only root a job's dataset path may name by default."""
    with np.load(shared_data_dir / "cifar10.npz") as a:
        arrays = {"x_train": a["x_train"][:400], "y_train": a["y_train"][:400], "x_test": a["x_test"][:200],
                  "y_test": a["y_test"][:200], "classes": a["classes"]}
    path = settings.data_path / "cifar" / "cifar10_small.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return f"npz:{path}"


def test_one_answer_for_two_real_datasets_names_the_binding_one(
    client: Any, wait: Any, cifar_subset: str
) -> None:
    reports = {
        "digits": _run(client, wait)[1],
        cifar_subset: _run(client, wait, dataset={"spec": cifar_subset, "max_train": 300, "max_test": 100})[1],
    }
    params = [("model", "resnet18"), ("weights", "random"), ("dataset", "digits"), ("dataset", cifar_subset),
              ("delta", "0.05")]
    r = client.get("/v1/recommendations", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    want = recommend_multitask({n: TaskCurve.from_report(rep) for n, rep in reports.items()}, 0.05)
    assert body["k"] == want.k and body["binding"] == want.binding and body["binding"] in reports
    per = {t["dataset"]: t for t in body["tasks"]}
    expected = {t.dataset: t for t in want.tasks}
    assert set(per) == set(expected) == set(reports)
    for name, t in per.items():
        assert t["accuracy"] == pytest.approx(expected[name].accuracy) and t["own_k"] == expected[name].own_k
        assert t["margin"] >= -1e-12 or body["k"] == report_d(reports)
        assert "gini_change" in t["fairness"]
        assert t["savings"]["saved_fraction"] == pytest.approx(1 - body["k"] / report_d(reports))


def report_d(reports: dict[str, Report]) -> int:
    (d,) = {r.model.d for r in reports.values()}
    return d
