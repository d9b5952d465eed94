"""Explicit pairs as a directory of tables through the engine and the API (issue 20, must-have 1): a
`.parquet` directory scores exactly as the `.npz` of the same pairs; a directory that lacks a column is
refused at submission with a 422 naming `dataset.spec` and the column, never a 500."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from redundancy import AnalysisConfig, Runtime
from redundancy.pipeline import run_analysis
from tests.engine.served import served


def _pairs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int]]]:
    topics = rng.standard_normal((8, 16))
    doc_topic, query_topic = rng.integers(0, 8, 200), rng.integers(0, 8, 40)
    corpus = (topics[doc_topic] + 0.8 * rng.standard_normal((200, 16))).astype(np.float32)
    queries = (topics[query_topic] + 0.8 * rng.standard_normal((40, 16))).astype(np.float32)
    qrels = [(q, int(c), int(rng.integers(0, 3)))
             for q in range(40) for c in np.flatnonzero(doc_topic == query_topic[q])]
    return corpus, queries, qrels


def test_parquet_pairs_directory_scores_as_its_npz(tmp_path: Path) -> None:
    corpus, queries, qrels = _pairs(np.random.default_rng(9))
    np.savez(tmp_path / "pairs.npz", corpus=corpus, queries=queries, qrels=np.array(qrels))
    d = tmp_path / "pairs"
    d.mkdir()
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(200)], "embedding": corpus.tolist()}), d / "corpus.parquet")
    pq.write_table(pa.table({"id": [f"q{i}" for i in range(40)], "embedding": queries.tolist()}), d / "queries.parquet")
    (d / "qrels.jsonl").write_text("".join(json.dumps({"query_id": f"q{q}", "doc_id": f"d{c}", "relevance": r}) + "\n"
                                           for q, c, r in qrels))
    runtime = Runtime(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work", data_root=tmp_path)
    common = {"task": "retrieval", "fractions": [0.5, 1.0], "seeds": 2, "bootstrap": 0, "baselines": [],
              "feature_dtype": "float32"}
    tables = run_analysis(AnalysisConfig.model_validate({**common, "dataset": {"spec": f"embeddings:{d}"}}),
                          runtime).report
    npz = run_analysis(AnalysisConfig.model_validate(
        {**common, "dataset": {"spec": f"embeddings:{tmp_path / 'pairs.npz'}"}}), runtime).report
    assert tables.recommendations[0].metric == "ndcg@10"
    assert tables.full_accuracy == npz.full_accuracy and 0.2 < tables.full_accuracy < 1.0


def test_pairs_directory_missing_a_column_is_a_422_at_submission(tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    pq.write_table(pa.table({"id": ["d0"], "vector": [[1.0, 2.0]]}), d / "corpus.parquet")
    pq.write_table(pa.table({"id": ["q0"], "embedding": [[1.0, 2.0]]}), d / "queries.parquet")
    (d / "qrels.jsonl").write_text(json.dumps({"query_id": "q0", "doc_id": "d0"}) + "\n")
    with served(tmp_path, str(tmp_path)) as srv:
        r = srv.client.post("/v1/jobs", json={"dataset": {"spec": f"embeddings:{d}"}, "task": "retrieval"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    errors = r.json()["errors"]
    assert any(e["field"] == "dataset.spec" and "lacks column 'embedding'" in e["reason"] for e in errors), errors
