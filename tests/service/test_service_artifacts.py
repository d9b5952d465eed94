"""Issue 12 on the API: the artifact of a job for any δ, its model card, the artifact store's life, and
the multi-dataset recommendation, each refusal a problem+json naming its reason.

The fake engine (conftest) leaves statistics of known rows on its report, so a downloaded head is
checked against a direct ridge solve on those rows; the real engine runs in tests/integration.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from redundancy.config import AnalysisConfig
from redundancy.deploy import TaskCurve, load_artifact, recommend_multitask
from redundancy.pipeline import Analysis
from redundancy.probing import sample_subset
from redundancy.report import Report
from service.core.db import session_scope
from service.core.models import Job, JobStats
from tests.service.conftest import CLASSES, D, Harness, fake_report, fake_rows, small_job

OTHER_ROOT = Path(tempfile.gettempdir()) / "advisor-tests-srv-data"
OTHER = f"npz:{OTHER_ROOT}/other.npz"  # never read (the fake engine); made an allowed root below


def _allow_other(harness: Harness) -> None:
    OTHER_ROOT.mkdir(exist_ok=True)
    (OTHER_ROOT / "other.npz").touch()  # it must exist to be accepted (issue 18)
    harness.settings.data_roots = f"{harness.settings.data_path},{OTHER_ROOT}"


def _succeeded(h: Harness, **over: Any) -> dict[str, Any]:
    job = h.submit(small_job(**over))
    h.run_all()
    job = h.client.get(f"/v1/jobs/{job['id']}").json()
    assert job["status"] == "succeeded", job
    return job


def _download(h: Harness, job_id: str, tmp_path: Path, **params: Any) -> tuple[Path, Any]:
    r = h.client.get(f"/v1/jobs/{job_id}/artifact", params=params)
    assert r.status_code == 200, r.text
    path = tmp_path / f"{job_id}-{r.headers['etag'].strip(chr(34))}.safetensors"
    path.write_bytes(r.content)
    return path, r


def _direct_predictions(config: AnalysisConfig, subset: np.ndarray, lam: float, x: np.ndarray) -> np.ndarray:
    """The ridge probe by the obvious computation on the fitted rows: standardise, solve, add the prior."""
    rows, y = fake_rows(config)
    mu, sd = rows.mean(0), rows.std(0)
    z = ((rows - mu) / sd)[:, subset]
    onehot = np.eye(len(CLASSES))[y]
    prior = onehot.mean(0)
    w = np.linalg.solve(z.T @ z + lam * np.eye(len(subset)), z.T @ (onehot - prior))
    return (((x - mu) / sd)[:, subset] @ w + prior).argmax(1)


def test_artifact_for_a_stored_and_a_new_delta_is_the_probe_refitted(harness: Harness, tmp_path: Path) -> None:
    job = _succeeded(harness)
    assert job["links"]["artifact"] == f"/v1/jobs/{job['id']}/artifact"
    config = AnalysisConfig.model_validate(job["request"])
    x = np.random.default_rng(7).normal(size=(50, D))
    for delta in (0.05, 0.2):  # 0.05 is one of the job's δs, 0.2 is not
        path, r = _download(harness, job["id"], tmp_path, delta=delta)
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["etag"].startswith('"') and "attachment" in r.headers["content-disposition"]
        art = load_artifact(path, d=D)
        rec = harness.client.get(f"/v1/jobs/{job['id']}/recommendation", params={"delta": delta}).json()
        assert art.k == rec["k"] and art.metadata["recommendation"]["delta"] == delta
        seed = art.metadata["subset"]["seed"]
        assert np.array_equal(art.indices, sample_subset(D, art.k, seed, config.seed))
        assert art.metadata["model"]["weights_sha256"] == "f" * 64
        assert art.metadata["subset"]["fitted_on_rows"] == 10  # train + val: the GCV probe's rows
        assert np.array_equal(art.predict(x), _direct_predictions(config, art.indices, 1.0, x))


def test_etag_and_if_none_match(harness: Harness) -> None:
    job = _succeeded(harness)
    url = f"/v1/jobs/{job['id']}/artifact"
    first = harness.client.get(url, params={"delta": 0.05})
    again = harness.client.get(url, params={"delta": 0.05})
    assert first.headers["etag"] == again.headers["etag"] and first.content == again.content
    assert harness.client.get(url, params={"delta": 0.3}).headers["etag"] != first.headers["etag"]
    for header in (first.headers["etag"], f'"x", W/{first.headers["etag"]}', "*"):
        r = harness.client.get(url, params={"delta": 0.05}, headers={"If-None-Match": header})
        assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == first.headers["etag"]
    stale = harness.client.get(url, params={"delta": 0.05}, headers={"If-None-Match": '"other"'})
    assert stale.status_code == 200 and stale.content == first.content


def test_model_card(harness: Harness, tmp_path: Path) -> None:
    job = _succeeded(harness)
    path, _ = _download(harness, job["id"], tmp_path, delta=0.05)
    r = harness.client.get(f"/v1/jobs/{job['id']}/artifact/card", params={"delta": 0.05})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    card = r.json()
    art = load_artifact(path)
    assert card["recommendation"] == art.metadata["recommendation"] and card["subset"] == art.metadata["subset"]
    assert card["file"].endswith(".safetensors") and len(card["sha256"]) == 64
    assert "interchangeable on average" in card["promise"]
    r304 = harness.client.get(f"/v1/jobs/{job['id']}/artifact/card", params={"delta": 0.05},
                              headers={"If-None-Match": r.headers["etag"]})
    assert r304.status_code == 304


def _problem(r: Any, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"].endswith(slug), body
    return dict(body)


@pytest.mark.parametrize("delta", ["1.5", "-0.1", "nan", "abc"])
def test_bad_delta_is_a_422_naming_delta(harness: Harness, delta: str) -> None:
    job = _succeeded(harness)
    for suffix in ("artifact", "artifact/card"):
        body = _problem(harness.client.get(f"/v1/jobs/{job['id']}/{suffix}?delta={delta}"), 422, "validation-error")
        assert body["errors"][0]["field"] == "delta"


def test_a_job_that_has_not_succeeded_is_a_409(harness: Harness) -> None:
    job = harness.submit()
    body = _problem(harness.client.get(f"/v1/jobs/{job['id']}/artifact"), 409, "result-not-ready")
    assert body["job_status"] == "queued"
    harness.engine.raise_ = RuntimeError("boom")
    harness.run_all()
    body = _problem(harness.client.get(f"/v1/jobs/{job['id']}/artifact"), 409, "result-not-ready")
    assert body["job_status"] == "failed"
    _problem(harness.client.get("/v1/jobs/00000000-0000-0000-0000-000000000000/artifact"), 404, "job-not-found")


def test_a_logistic_job_is_a_422_naming_the_probe(harness: Harness) -> None:
    def logistic(config: AnalysisConfig) -> Report:
        return fake_report(config).model_copy(update={"probe": "logistic"})

    harness.engine.report_fn = logistic
    job = _succeeded(harness, probe="logistic")
    body = _problem(harness.client.get(f"/v1/jobs/{job['id']}/artifact"), 422, "artifact-not-supported")
    assert body["errors"][0]["field"] == "probe" and "ridge" in body["errors"][0]["reason"]
    with session_scope(harness.settings.db_url) as s:  # nothing was written for it
        row = s.get(JobStats, job["id"])
        assert row is not None and row.path is None and "logistic" in (row.reason or "")


def test_missing_statistics_are_a_409_with_the_reason(harness: Harness) -> None:
    harness.engine.report_fn = lambda c: Analysis(fake_report(c))  # no statistics
    job = _succeeded(harness)
    body = _problem(harness.client.get(f"/v1/jobs/{job['id']}/artifact"), 409, "artifact-unavailable")
    assert "no layer statistics" in body["reason"]
    # a job from before the artifact store: no reference at all
    harness.engine.report_fn = fake_report
    old = _succeeded(harness)
    with session_scope(harness.settings.db_url) as s:
        s.execute(sa.delete(JobStats).where(JobStats.job_id == old["id"]))
        s.commit()
    body = _problem(harness.client.get(f"/v1/jobs/{old['id']}/artifact"), 409, "artifact-unavailable")
    assert "before the artifact store" in body["reason"]


def _stats_path(h: Harness, job_id: str) -> Path:
    with session_scope(h.settings.db_url) as s:
        row = s.get(JobStats, job_id)
        assert row is not None and row.path is not None
        return Path(row.path)


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_statistics_file_gone_from_the_store_is_a_410(harness: Harness, damage: str) -> None:
    job = _succeeded(harness)
    path = _stats_path(harness, job["id"])
    assert path.is_file() and path.parent.parent == harness.settings.artifact_path
    if damage == "deleted":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:64])
    body = _problem(harness.client.get(f"/v1/jobs/{job['id']}/artifact", params={"delta": 0.2}), 410,
                    "artifact-stats-gone")
    assert body["reason"] and body["title"] == "Statistics gone"


def test_deleting_the_job_deletes_its_files(harness: Harness) -> None:
    job = _succeeded(harness)
    assert harness.client.get(f"/v1/jobs/{job['id']}/artifact").status_code == 200  # a built head, too
    directory = _stats_path(harness, job["id"]).parent
    assert len(list(directory.rglob("*.safetensors"))) == 1
    assert harness.client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert not directory.exists()
    with session_scope(harness.settings.db_url) as s:
        assert s.get(JobStats, job["id"]) is None


def test_a_result_that_was_not_stored_leaves_no_file(harness: Harness) -> None:
    """The job changes hands while it runs: the worker's result is dropped, and so is its statistics file."""
    harness.engine.blocking = True
    job = harness.submit()
    t = threading.Thread(target=harness.run_all)
    t.start()
    assert harness.engine.entered.wait(10)
    with session_scope(harness.settings.db_url) as s:  # another attempt took the job over meanwhile
        s.execute(sa.update(Job).where(Job.id == job["id"]).values(attempts=99))
        s.commit()
    harness.engine.block.set()
    t.join(10)
    assert harness.sent == [] and not t.is_alive()
    assert not list((harness.settings.artifact_path / job["id"]).glob("stats-*.npz"))


# -- several datasets ----------------------------------------------------------------------------


def _by_dataset(shift: dict[str, float], layer: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """A fake engine whose curve falls faster on some datasets (so one of them binds the answer)."""

    def report(config: AnalysisConfig) -> Report:
        r = fake_report(config)
        s = shift.get(config.dataset.spec, 0.0)
        curve = [p.model_copy(update={"accuracy": p.accuracy - s * (1 - p.fraction),
                                      "per_class_accuracy": [a - s * (1 - p.fraction) for a in p.per_class_accuracy]})
                 for p in r.curve]
        model = r.model.model_copy(update={"layer": (layer or {}).get(config.dataset.spec, r.model.layer)})
        out = r.model_copy(update={"curve": curve, "model": model})
        return out

    return report


def test_several_datasets_answer_the_smallest_common_k_and_name_the_binding_one(harness: Harness) -> None:
    _allow_other(harness)
    harness.engine.report_fn = _by_dataset({OTHER: 0.1})
    fr = [0.1, 0.2, 0.3, 0.5, 0.7, 1.0]
    jobs = {spec: _succeeded(harness, dataset={"spec": spec, "max_train": 300, "max_test": 100}, fractions=fr)
            for spec in ("digits", OTHER)}
    r = harness.client.get("/v1/recommendations", params=[("model", "resnet18"), ("dataset", "digits"),
                                                           ("dataset", OTHER), ("delta", "0.2")])
    assert r.status_code == 200, r.text
    body = r.json()
    reports = {spec: Report.model_validate(harness.client.get(f"/v1/jobs/{j['id']}/result").json())
               for spec, j in jobs.items()}
    want = recommend_multitask({s: TaskCurve.from_report(rep) for s, rep in reports.items()}, 0.2)
    assert body["k"] == want.k < D and body["binding"] == want.binding == OTHER
    assert body["jobs"] == {s: j["id"] for s, j in jobs.items()} and body["model"] == "resnet18"
    per = {t["dataset"]: t for t in body["tasks"]}
    assert set(per) == {"digits", OTHER} and per[OTHER]["own_k"] > per["digits"]["own_k"]
    assert all("gini_change" in t["fairness"] and t["savings"]["saved_fraction"] >= 0 for t in body["tasks"])
    # each dataset alone is answered as before
    one = harness.client.get("/v1/recommendations", params={"model": "resnet18", "dataset": "digits",
                                                            "delta": 0.2}).json()
    assert one["job_id"] == jobs["digits"]["id"] and one["k"] == per["digits"]["own_k"]


def test_several_datasets_refusals_name_what_is_wrong(harness: Harness) -> None:
    _allow_other(harness)
    harness.engine.report_fn = _by_dataset({}, layer={OTHER: "blocks.5"})
    _succeeded(harness)
    q = [("model", "resnet18"), ("dataset", "digits"), ("dataset", "npz:/nowhere.npz"), ("delta", "0.05")]
    body = _problem(harness.client.get("/v1/recommendations", params=q), 409, "tasks-missing")
    assert body["datasets"] == ["npz:/nowhere.npz"]
    other = _succeeded(harness, dataset={"spec": OTHER, "max_train": 300, "max_test": 100})
    q = [("model", "resnet18"), ("dataset", "digits"), ("dataset", OTHER), ("delta", "0.05")]
    body = _problem(harness.client.get("/v1/recommendations", params=q), 422, "tasks-incompatible")
    assert body["errors"][0]["field"] == "layer" and OTHER in body["detail"] and body["jobs"][OTHER] == other["id"]
    body = _problem(harness.client.get("/v1/recommendations", params=q[:-1] + [("delta", "2")]), 422,
                    "validation-error")
    assert body["errors"][0]["field"] == "delta"
    body = _problem(harness.client.get("/v1/recommendations", params=[("model", "resnet18"), ("dataset", "digits"),
                                                                       ("dataset", "digits")]), 422,
                    "validation-error")
    assert body["errors"][0]["field"] == "dataset" and "more than once" in body["errors"][0]["reason"]


def test_openapi_declares_the_binary_artifact_and_its_refusals(client: Any) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/jobs/{job_id}/artifact"]["get"]
    assert op["responses"]["200"]["content"]["application/octet-stream"]["schema"] == {
        "type": "string", "format": "binary"}
    assert {"304", "404", "409", "410", "422"} <= set(op["responses"])
    assert "ETag" in op["responses"]["200"]["headers"]
    assert {p["name"] for p in op["parameters"]} >= {"delta", "delta_mode", "criterion", "If-None-Match"}
    card = spec["paths"]["/v1/jobs/{job_id}/artifact/card"]["get"]
    assert "application/json" in card["responses"]["200"]["content"]
    recs = spec["paths"]["/v1/recommendations"]["get"]
    assert next(p for p in recs["parameters"] if p["name"] == "dataset")["schema"]["type"] == "array"
    assert {"404", "409", "422"} <= set(recs["responses"])


def test_concurrent_requests_for_a_new_delta_all_get_the_same_file(harness: Harness) -> None:
    job = _succeeded(harness)
    url = f"/v1/jobs/{job['id']}/artifact?delta=0.3"
    answers: list[Any] = []
    threads = [threading.Thread(target=lambda: answers.append(harness.client.get(url))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(answers) == 8 and {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1 and len({a.headers["etag"] for a in answers}) == 1
    heads = list((harness.settings.artifact_path / job["id"] / "heads").rglob("*"))
    assert not [p for p in heads if p.name.endswith(".tmp")]
