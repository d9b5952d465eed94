"""`GET /v1/jobs/{id}/artifact` of a retrieval job (issue 20, must-have 4): the kept dimensions only, no head,
with the metric, score and full score. The real engine runs on a small labelled `.npz` (no model); the
artifact's reduction applied to the job's own vectors, searched by brute-force numpy, gives back the stored
score of the curve point it was drawn from (the chosen seed's, not the seed mean)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from redundancy import Runtime
from redundancy.deploy import load_artifact, reducer
from redundancy.pipeline import run_analysis
from tests.service.conftest import small_job

D = 24


@pytest.fixture
def settings(tmp_path: Path, settings_factory: Any) -> Any:
    return settings_factory(tmp_path, data_roots=str(tmp_path))


@pytest.fixture
def vectors(tmp_path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((4, D)) * np.linspace(2.0, 0.2, D)  # early dimensions carry the labels
    y_train, y_test = rng.integers(0, 4, 240), rng.integers(0, 4, 60)
    arrays = {"x_train": (centres[y_train] + rng.standard_normal((240, D))).astype(np.float32), "y_train": y_train,
              "x_test": (centres[y_test] + rng.standard_normal((60, D))).astype(np.float32), "y_test": y_test}
    np.savez(tmp_path / "vectors.npz", **arrays)
    return arrays


@pytest.fixture
def job(harness: Any, vectors: dict[str, np.ndarray], tmp_path: Path) -> dict[str, Any]:
    runtime = Runtime(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work", data_root=tmp_path)
    harness.engine.report_fn = lambda config: run_analysis(config, runtime)
    body = small_job(dataset={"spec": f"embeddings:{tmp_path / 'vectors.npz'}"}, task="retrieval",
                     fractions=[0.25, 0.5, 1.0], seeds=3, deltas=[0.1], bootstrap=0, feature_dtype="float32",
                     baselines=["first_k", "pca", "random_projection"])
    body.pop("model", None)
    job = harness.submit(body)
    assert harness.run_all() == ["succeeded"], harness.client.get(f"/v1/jobs/{job['id']}").json()
    return job


def brute_ndcg10(corpus: np.ndarray, corpus_y: np.ndarray, queries: np.ndarray, query_y: np.ndarray) -> float:
    """nDCG@10 with binary gains by cosine similarity, by loops over the definition (float64)."""
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = []
    for i in range(len(q)):
        n_rel = int((corpus_y == query_y[i]).sum())
        if n_rel == 0:
            continue
        top = np.lexsort((np.arange(len(c)), -(c @ q[i])))[:10]
        dcg = sum(1.0 / math.log2(r + 2) for r, j in enumerate(top) if corpus_y[j] == query_y[i])
        scores.append(dcg / sum(1.0 / math.log2(r + 2) for r in range(min(10, n_rel))))
    return float(np.mean(scores))


@pytest.mark.parametrize("method", ["random_subset", "first_k", "random_projection", "pca"])
def test_retrieval_artifact_reproduces_its_curve_points_score(
    harness: Any, job: dict[str, Any], vectors: dict[str, np.ndarray], tmp_path: Path, method: str,
) -> None:
    url = f"/v1/jobs/{job['id']}/artifact"
    r = harness.client.get(url, params={"delta": 0.1, "method": method})
    assert r.status_code == 200, r.text
    path = tmp_path / f"{method}.safetensors"
    path.write_bytes(r.content)
    art = load_artifact(path)
    rec = harness.client.get(f"/v1/jobs/{job['id']}/recommendation", params={"delta": 0.1}).json()
    report = harness.client.get(f"/v1/jobs/{job['id']}/result").json()
    kinds = ("random", "refinement") if method == "random_subset" else (method,)
    point = next(p for p in report["curve"]
                 if p["kind"] in kinds and p["k"] == art.k and p["seed"] == art.metadata["subset"]["seed"])
    assert not art.has_head and art.weight is None and art.method == method
    assert art.k == next(m["k"] for m in rec["methods"] if m["method"] == method)
    assert (art.projection is not None) == (method in ("pca", "random_projection"))
    sub = art.metadata["subset"]
    assert sub["metric"] == rec["metric"] == "ndcg@10" and sub["score"] == point["accuracy"]
    assert sub["full_score"] == rec["full_score"] and art.layer == report["model"]["layer"]
    recomputed = brute_ndcg10(art.reduce(vectors["x_train"]), vectors["y_train"], art.reduce(vectors["x_test"]),
                              vectors["y_test"])
    assert recomputed == pytest.approx(point["accuracy"], abs=1e-9)
    torch_cut = reducer(art)(vectors["x_test"])
    assert np.abs(torch_cut - art.reduce(vectors["x_test"])).max() < 1e-4
    card = harness.client.get(f"{url}/card", params={"delta": 0.1, "method": method}).json()
    assert card["subset"]["method"] == method and "weight" not in card["tensors"]
    assert card["usage"].startswith("kept = x_raw[:, indices]")


def test_random_subset_is_the_engines_draw_and_onnx_gives_the_kept_dims(
    harness: Any, job: dict[str, Any], vectors: dict[str, np.ndarray], tmp_path: Path,
) -> None:
    ort = pytest.importorskip("onnxruntime")
    url = f"/v1/jobs/{job['id']}/artifact"
    r = harness.client.get(url, params={"delta": 0.1})
    path = tmp_path / "a.safetensors"
    path.write_bytes(r.content)
    art = load_artifact(path)
    assert np.all(np.diff(art.indices) > 0) and art.indices.max() < D
    assert np.array_equal(art.reduce(vectors["x_test"]), vectors["x_test"][:, art.indices].astype(np.float64))
    ox = harness.client.get(url, params={"delta": 0.1, "format": "onnx"})
    assert ox.status_code == 200, ox.text
    session = ort.InferenceSession(ox.content, providers=["CPUExecutionProvider"])
    got = session.run(["embedding"], {"features": vectors["x_test"]})[0]
    assert got.shape == (60, art.k) and np.abs(got - art.reduce(vectors["x_test"])).max() < 1e-5
    assert harness.client.get(url, params={"delta": 0.1}).headers["etag"] == r.headers["etag"]


def test_a_method_the_retrieval_job_did_not_run_is_a_422_naming_method(
    harness: Any, vectors: dict[str, np.ndarray], tmp_path: Path,
) -> None:
    runtime = Runtime(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work", data_root=tmp_path)
    harness.engine.report_fn = lambda config: run_analysis(config, runtime)
    body = small_job(dataset={"spec": f"embeddings:{tmp_path / 'vectors.npz'}"}, task="retrieval",
                     fractions=[0.5, 1.0], seeds=2, deltas=[0.1], bootstrap=0, baselines=[])
    body.pop("model", None)
    job = harness.submit(body)
    assert harness.run_all() == ["succeeded"]
    r = harness.client.get(f"/v1/jobs/{job['id']}/artifact", params={"method": "first_k"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    assert "method" in r.text and "first_k" in r.text
    assert harness.client.get(f"/v1/jobs/{job['id']}/artifact").status_code == 200
