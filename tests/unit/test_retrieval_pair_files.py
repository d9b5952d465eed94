"""Explicit retrieval pairs as tables (issue 20, must-have 1): `embeddings:<directory>` of corpus, queries and
qrels as `.parquet` or `.jsonl`, and `qrels.jsonl` in a BEIR text directory. Each reads to the same dataset
as the `.npz` / `.tsv` form of the same pairs; a missing file, column or id is a dataset error naming it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from redundancy.errors import DatasetFormatError, DatasetNotFoundError
from redundancy.sources.datasets.embeddings import check_embeddings, load_embeddings, load_pairs
from redundancy.sources.datasets.pairs import load_text_pairs

RNG = np.random.default_rng(4)
CORPUS = RNG.standard_normal((30, 6)).astype(np.float32)
QUERIES = RNG.standard_normal((8, 6)).astype(np.float32)
DOC_IDS = [f"d{i}" for i in range(30)]
QUERY_IDS = [f"q{i}" for i in range(8)]
# query 5 has only a relevance-0 pair, so it is dropped; query 7 has none
QRELS = [(f"q{q}", f"d{d}", r) for q, d, r in
         [(0, 3, 1), (0, 4, 2), (1, 10, 1), (2, 11, 1), (3, 0, 1), (4, 29, 1), (5, 7, 0), (6, 12, 1), (6, 3, 1)]]


def _write(directory: Path, fmt: str, *, drop: tuple[str, str] | None = None) -> Path:
    """corpus / queries / qrels tables in `fmt` (parquet or jsonl); `drop` = (table, column) leaves one out."""
    directory.mkdir(parents=True, exist_ok=True)
    tables = {
        "corpus": {"id": DOC_IDS, "embedding": CORPUS.tolist()},
        "queries": {"id": QUERY_IDS, "embedding": QUERIES.tolist()},
        "qrels": {"query_id": [q for q, _, _ in QRELS], "doc_id": [d for _, d, _ in QRELS],
                  "relevance": [r for _, _, r in QRELS]},
    }
    if drop is not None:
        del tables[drop[0]][drop[1]]
    for name, cols in tables.items():
        if fmt == "parquet":
            pq.write_table(pa.table(cols), directory / f"{name}.parquet")
        else:
            rows = [dict(zip(cols, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]
            (directory / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return directory


def _npz_twin(tmp_path: Path) -> Path:
    """The same pairs as an .npz (rows instead of ids)."""
    path = tmp_path / "twin.npz"
    np.savez(path, corpus=CORPUS, queries=QUERIES,
             qrels=np.array([(int(q[1:]), int(d[1:]), r) for q, d, r in QRELS]))
    return path


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_pairs_directory_reads_as_the_npz_of_the_same_pairs(tmp_path: Path, fmt: str) -> None:
    ds = load_embeddings("embeddings:dir", _write(tmp_path / fmt, fmt))
    twin = load_pairs("embeddings:twin", _npz_twin(tmp_path))
    kept = [0, 1, 2, 3, 4, 6]  # the queries with a relevant pair, in file order
    assert np.array_equal(ds.train.items, CORPUS) and np.array_equal(ds.test.items, QUERIES[kept])
    expected = {(kept.index(int(q[1:])), int(d[1:])) for q, d, r in QRELS if r > 0}
    assert {tuple(p) for p in ds.qrels.tolist()} == expected
    # the npz keeps every query; its qrels name the same (query, document) pairs
    assert {(kept[q], d) for q, d in ds.qrels.tolist()} == {tuple(p) for p in twin.qrels.tolist()}
    assert check_embeddings(tmp_path / fmt).d == 6 and ds.classes == twin.classes


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
@pytest.mark.parametrize("table, col", [("corpus", "embedding"), ("queries", "id"), ("qrels", "doc_id")])
def test_missing_column_is_a_format_error_naming_file_and_column(tmp_path: Path, fmt: str, table: str,
                                                                  col: str) -> None:
    with pytest.raises(DatasetFormatError, match=rf"{table}\.{fmt} lacks column '{col}'") as err:
        load_embeddings("embeddings:dir", _write(tmp_path / "d", fmt, drop=(table, col)))
    assert err.value.field == "dataset.spec"


def test_unknown_ids_missing_file_and_ragged_vectors_are_named(tmp_path: Path) -> None:
    d = _write(tmp_path / "ids", "jsonl")
    with (d / "qrels.jsonl").open("a") as fh:
        fh.write(json.dumps({"query_id": "q1", "doc_id": "nope", "relevance": 1}) + "\n")
    with pytest.raises(DatasetFormatError, match="'nope'"):
        load_embeddings("embeddings:dir", d)
    gone = _write(tmp_path / "gone", "parquet")
    (gone / "qrels.parquet").unlink()
    with pytest.raises(DatasetNotFoundError, match="qrels.parquet"):
        load_embeddings("embeddings:dir", gone)
    ragged = _write(tmp_path / "ragged", "jsonl")
    (ragged / "queries.jsonl").write_text(json.dumps({"id": "q0", "embedding": [1.0] * 6}) + "\n"
                                          + json.dumps({"id": "q1", "embedding": [1.0] * 5}) + "\n")
    with pytest.raises(DatasetFormatError, match="ragged vectors in 'embedding'"):
        load_embeddings("embeddings:dir", ragged)


def test_beir_text_directory_takes_qrels_jsonl_as_its_tsv(tmp_path: Path) -> None:
    def beir(directory: Path) -> Path:
        directory.mkdir()
        (directory / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "text": f"doc {d}"}) + "\n"
                                                        for d in DOC_IDS))
        (directory / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": f"query {q}"}) + "\n"
                                                         for q in QUERY_IDS))
        return directory

    tsv = beir(tmp_path / "tsv")
    (tsv / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{r}\n" for q, d, r in QRELS))
    jl = beir(tmp_path / "jl")
    (jl / "qrels.jsonl").write_text("".join(json.dumps({"query-id": q, "corpus-id": d, "score": r}) + "\n"
                                            for q, d, r in QRELS))
    a, b = load_text_pairs("text:tsv", tsv), load_text_pairs("text:jl", jl)
    assert np.array_equal(a.qrels, b.qrels) and list(a.test.items) == list(b.test.items)
    assert len(b.test.items) == 6 and b.qrels.shape == (8, 2)
