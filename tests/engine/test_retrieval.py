"""Issue 20's bar: retrieval as the task, on real models and real data.

- Through the HTTP API and the real worker: a `task: retrieval` job over `text:drugreviews.csv` (label
  `condition`) with the packaged all-MiniLM-L6-v2 succeeds, its recommendation names ndcg@10, and its
  full-layer score equals a brute-force numpy computation of nDCG@10 on the same stored embeddings.
- Label retrieval on the bundled EfficientNet-Lite0's digits features: the engine's full-layer
  recall@10 equals the one computed from scikit-learn's `NearestNeighbors` on the same features.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from redundancy import AnalysisConfig, Runtime
from redundancy.deploy import load_artifact
from redundancy.pipeline import run_analysis
from redundancy.sources.extraction import Features
from tests.engine.minilm import unpack_minilm
from tests.engine.served import served

pytest.importorskip("all_minilm_l6_v2")


def _corpus_and_queries(cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    (meta,) = cache.rglob("meta.json")
    f = Features.load(meta.parent)
    assert f.x_train is not None
    corpus = np.concatenate([f.x_train, f.x_val]).astype(np.float64)
    return corpus, np.concatenate([f.y_train, f.y_val]), np.asarray(f.x_test, dtype=np.float64), f.y_test


def brute_ndcg10(corpus: np.ndarray, corpus_y: np.ndarray, queries: np.ndarray, query_y: np.ndarray) -> float:
    """Cosine similarity of every pair in float64, each query's ranking by (similarity desc, index asc),
    nDCG@10 with binary gains from the definition, mean over queries with a relevant corpus item."""
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q @ c.T
    scores = []
    for i, y in enumerate(query_y):
        n_rel = int((corpus_y == y).sum())
        if n_rel == 0:
            continue
        order = np.lexsort((np.arange(len(c)), -sims[i]))[:10]
        dcg = sum(1.0 / math.log2(r + 2) for r, j in enumerate(order) if corpus_y[j] == y)
        idcg = sum(1.0 / math.log2(r + 2) for r in range(min(10, n_rel)))
        scores.append(dcg / idcg)
    return float(np.mean(scores))


def test_retrieval_job_over_http_names_ndcg_and_matches_brute_force(tmp_path: Path, shared_data_dir: Path) -> None:
    model_dir = unpack_minilm(tmp_path / "minilm")
    reviews = shared_data_dir / "drugreviews.csv"
    body = {"model": {"name": f"hf:{model_dir}"},
            "dataset": {"spec": f"text:{reviews}", "label_column": "condition", "max_train": 240, "max_test": 120},
            "task": "retrieval", "fractions": [0.05, 0.25, 1.0], "seeds": 2, "deltas": [0.05], "bootstrap": 100,
            "baselines": ["first_k", "pca"], "feature_dtype": "float32"}
    with served(tmp_path, f"{tmp_path}:{shared_data_dir}") as srv:
        client, settings = srv.client, srv.settings
        r = client.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert srv.run_sent() == "succeeded"
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
        rec = client.get(f"/v1/jobs/{job_id}/recommendation", params={"delta": 0.05}).json()
        other = client.get(f"/v1/jobs/{job_id}/recommendation", params={"delta": 0.3}).json()
        result = client.get(f"/v1/jobs/{job_id}/result").json()
        artifact = client.get(f"/v1/jobs/{job_id}/artifact")
    assert rec["metric"] == other["metric"] == "ndcg@10", rec
    assert rec["d"] == 384 and rec["full_score"] == rec["full_accuracy"]
    assert rec["fairness"]["seeds_at"] >= 1 and rec["holds_ci_lower"] is not None
    assert {m["method"] for m in rec["methods"]} == {"random_subset", "first_k", "pca"}
    assert other["k"] <= rec["k"]  # a looser δ never needs more dimensions
    assert result["dataset"]["fairness_groups"][0].startswith("queries 0")
    assert all(p["metric"] == "ndcg@10" for p in result["curve"])
    assert artifact.status_code == 200, artifact.text  # a retrieval artifact: the kept dimensions, no head
    (tmp_path / "retrieval.safetensors").write_bytes(artifact.content)
    art = load_artifact(tmp_path / "retrieval.safetensors")
    assert art.weight is None and art.k == rec["k"] and art.d == 384 and len(set(art.indices.tolist())) == art.k

    corpus, corpus_y, queries, query_y = _corpus_and_queries(settings.cache_dir)
    expected = brute_ndcg10(corpus, corpus_y, queries, query_y)
    assert 0.0 < expected < 1.0
    assert rec["full_score"] == pytest.approx(expected, abs=1e-12)


def test_digits_label_retrieval_equals_sklearn_neighbours(tmp_path: Path) -> None:
    config = AnalysisConfig.model_validate({
        "model": {"name": "tf_efficientnet_lite0", "weights": "bundled"},
        "dataset": {"spec": "digits", "max_train": 200, "max_test": 100}, "image_size": 64,
        "task": "retrieval", "metric": "recall@10", "fractions": [0.5, 1.0], "seeds": 1, "bootstrap": 0,
        "baselines": [], "feature_dtype": "float32",
    })
    runtime = Runtime(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work")
    report = run_analysis(config, runtime).report
    corpus, corpus_y, queries, query_y = _corpus_and_queries(runtime.cache_dir)
    _, idx = NearestNeighbors(n_neighbors=10, metric="cosine", algorithm="brute").fit(corpus).kneighbors(queries)
    n_rel = np.array([(corpus_y == y).sum() for y in query_y])
    recall = (corpus_y[idx] == query_y[:, None]).sum(1) / n_rel
    assert report.recommendations[0].metric == "recall@10"
    assert report.full_accuracy == pytest.approx(float(recall[n_rel > 0].mean()), abs=1e-12)
    assert 0.0 < report.full_accuracy < 1.0


def test_explicit_pairs_npz_scores_equal_brute_force(tmp_path: Path) -> None:
    """`embeddings:` .npz with corpus, queries and qrels (graded: relevance ≤ 0 is dropped): the full layer's
    nDCG@10 is the brute-force one over the qrels, whatever order the fit/validation split puts the corpus in."""
    rng = np.random.default_rng(20)
    topics = rng.standard_normal((12, 32))
    doc_topic = rng.integers(0, 12, 400)
    corpus = topics[doc_topic] + 0.8 * rng.standard_normal((400, 32))
    query_topic = rng.integers(0, 12, 60)
    queries = topics[query_topic] + 0.8 * rng.standard_normal((60, 32))
    qrels = [(q, c, int(rng.integers(-1, 3))) for q in range(60) for c in np.flatnonzero(doc_topic == query_topic[q])]
    path = tmp_path / "pairs.npz"
    np.savez(path, corpus=corpus.astype(np.float32), queries=queries.astype(np.float32), qrels=np.array(qrels))
    config = AnalysisConfig.model_validate({
        "dataset": {"spec": f"embeddings:{path}"}, "task": "retrieval", "fractions": [0.25, 1.0], "seeds": 2,
        "bootstrap": 50, "baselines": ["pca"], "feature_dtype": "float32"})
    report = run_analysis(config, Runtime(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work",
                                          data_root=tmp_path)).report
    c = corpus.astype(np.float32).astype(np.float64)
    q = queries.astype(np.float32).astype(np.float64)
    c, q = c / np.linalg.norm(c, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)
    relevant = {i: {cc for qq, cc, r in qrels if qq == i and r > 0} for i in range(60)}
    scores = []
    for i in range(60):
        if not relevant[i]:
            continue
        order = np.lexsort((np.arange(400), -(q[i] @ c.T)))[:10]
        dcg = sum(1.0 / math.log2(r + 2) for r, j in enumerate(order) if j in relevant[i])
        scores.append(dcg / sum(1.0 / math.log2(r + 2) for r in range(min(10, len(relevant[i])))))
    assert report.recommendations[0].metric == "ndcg@10"
    assert report.full_accuracy == pytest.approx(float(np.mean(scores)), abs=1e-12)
    assert 0.2 < report.full_accuracy < 1.0
    with pytest.raises(Exception, match="task 'retrieval'") as err:
        run_analysis(AnalysisConfig.model_validate({"dataset": {"spec": f"embeddings:{path}"}}),
                     Runtime(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work", data_root=tmp_path))
    assert getattr(err.value, "field", None) == "task"


def test_text_pairs_in_beir_layout_score_as_label_retrieval_on_the_same_texts(tmp_path: Path,
                                                                                shared_data_dir: Path) -> None:
    """A `text:<directory>` of corpus.jsonl, queries.jsonl and qrels/test.tsv whose qrels are "same condition"
    scores exactly as label retrieval by `condition` over the same reviews (same encoder, same texts)."""
    import csv
    import json

    model_dir = unpack_minilm(tmp_path / "minilm")
    with open(shared_data_dir / "drugreviews.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    train = [r for r in rows if r["split"] == "train"][:150]
    test = [r for r in rows if r["split"] == "test"][:60]
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": r["text"]}) + "\n"
                                               for i, r in enumerate(train)))
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": r["text"]}) + "\n"
                                                for i, r in enumerate(test)))
    lines = ["query-id\tcorpus-id\tscore"]
    for i, q in enumerate(test):
        lines += [f"q{i}\td{j}\t1" for j, d in enumerate(train) if d["condition"] == q["condition"]]
        lines.append(f"q{i}\td{(i * 7) % len(train)}\t0")  # score 0: not relevant
    (beir / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    labelled = tmp_path / "same.csv"
    with open(labelled, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["split", "text", "condition"])
        w.writeheader()
        w.writerows({k: r[k] for k in ("split", "text", "condition")} for r in train + test)
    common = {"model": {"name": f"hf:{model_dir}"}, "task": "retrieval", "fractions": [0.1, 1.0], "seeds": 2,
              "bootstrap": 0, "baselines": [], "feature_dtype": "float32"}
    runtime = Runtime(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work", data_root=tmp_path)
    pairs = run_analysis(AnalysisConfig.model_validate({**common, "dataset": {"spec": f"text:{beir}"}}),
                         runtime).report
    labels = run_analysis(AnalysisConfig.model_validate(
        {**common, "dataset": {"spec": f"text:{labelled}", "label_column": "condition"}}), runtime).report
    assert pairs.dataset.sizes["test"] < 60  # only the queries the qrels name (a condition with a train review)
    assert pairs.recommendations[0].metric == labels.recommendations[0].metric == "ndcg@10"
    assert pairs.full_accuracy == pytest.approx(labels.full_accuracy, abs=1e-12)
    assert 0.0 < pairs.full_accuracy < 1.0


def test_explicit_pairs_npz_job_over_http(tmp_path: Path) -> None:
    """The service takes an explicit-pairs .npz (its header checked at submission) and answers it."""
    rng = np.random.default_rng(3)
    corpus = rng.standard_normal((120, 16)).astype(np.float32)
    queries = (corpus[:40] + 0.3 * rng.standard_normal((40, 16))).astype(np.float32)  # query i is near doc i
    path = tmp_path / "pairs.npz"
    np.savez(path, corpus=corpus, queries=queries, qrels=np.array([(i, i) for i in range(40)]))
    bad = tmp_path / "bad.npz"
    np.savez(bad, corpus=corpus, queries=queries, qrels=np.zeros((3, 4), dtype=np.int64))
    body = {"dataset": {"spec": f"embeddings:{path}"}, "task": "retrieval", "metric": "recall@10",
            "fractions": [0.5, 1.0], "seeds": 2, "bootstrap": 0, "baselines": []}
    with served(tmp_path, str(tmp_path)) as srv:
        client = srv.client
        refused = client.post("/v1/jobs", json={**body, "dataset": {"spec": f"embeddings:{bad}"}})
        r = client.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        assert srv.run_sent() == "succeeded"
        rec = client.get(f"/v1/jobs/{r.json()['id']}/recommendation", params={"delta": 0.05}).json()
    assert refused.status_code == 422 and "qrels must be integers of shape" in refused.text
    assert rec["metric"] == "recall@10" and rec["d"] == 16
    assert rec["full_score"] > 0.5  # each query's one relevant document is its own noisy copy
