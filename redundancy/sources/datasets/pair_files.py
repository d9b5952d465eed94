"""Explicit retrieval pairs as tables: `.parquet` or `.jsonl` files read with pyarrow.

`embeddings:<directory>` (precomputed vectors, `task: retrieval` only) holds three files:

- `corpus.parquet` or `corpus.jsonl`: one row per document, columns `id` (string or integer) and
  `embedding` (a list of floats, every row the same width);
- `queries.parquet` or `queries.jsonl`: the same columns, one row per query;
- `qrels.parquet`, `qrels.jsonl` or `qrels.tsv`: one row per judged pair, columns `query_id`, `doc_id`
  and optional `relevance` (a number; pairs with relevance ≤ 0 are dropped, the rest are relevant). BEIR's
  names `query-id`, `corpus-id`, `score` are read too.

Only the queries with a relevant pair are kept (in file order); the corpus is every document. A missing
file or column, an unknown or duplicate id, a ragged or non-finite vector is a `DatasetFormatError` (or
`DatasetNotFoundError`) naming the file and the column. `read_qrels` also serves the text BEIR directory
(`pairs.py`: `qrels.jsonl` beside `qrels.tsv`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from redundancy.errors import DatasetFormatError, DatasetNotFoundError

TABLE_SUFFIXES = (".parquet", ".jsonl")
ID, EMBEDDING = "id", "embedding"
QRELS_COLUMNS = {"query_id": ("query_id", "query-id"), "doc_id": ("doc_id", "corpus-id"),
                 "relevance": ("relevance", "score")}


def find_table(directory: Path, stem: str, suffixes: tuple[str, ...] = TABLE_SUFFIXES) -> Path:
    """`<directory>/<stem><suffix>` for the first suffix that exists."""
    for suffix in suffixes:
        if (directory / f"{stem}{suffix}").is_file():
            return directory / f"{stem}{suffix}"
    raise DatasetNotFoundError(f"{directory.name}/: no {' or '.join(stem + s for s in suffixes)} (explicit pairs: "
                               "corpus, queries and qrels files)")


def is_pairs_dir(path: Path) -> bool:
    """Whether `path` is a directory of explicit pairs (it has a corpus table)."""
    return path.is_dir() and any((path / f"corpus{s}").is_file() for s in TABLE_SUFFIXES)


def read_table(path: Path) -> Any:
    """A `pyarrow.Table` from a .parquet, .jsonl (one JSON object per line) or .tsv (header line) file."""
    import pyarrow as pa  # lazy: pyarrow only for explicit-pairs tables
    import pyarrow.json as pj  # lazy: as above
    import pyarrow.parquet as pq  # lazy: as above

    try:
        if path.suffix == ".parquet":
            return pq.read_table(path)
        if path.suffix == ".tsv":
            with open(path, newline="", encoding="utf-8") as fh:
                rows = [r for r in csv.reader(fh, delimiter="\t") if r]
            if not rows:
                return pa.table({})
            return pa.table({name: [r[i] if i < len(r) else None for r in rows[1:]] for i, name in enumerate(rows[0])})
        return pj.read_json(path)
    except (pa.ArrowInvalid, OSError, json.JSONDecodeError) as exc:
        raise DatasetFormatError(f"{path.name} is not a readable {path.suffix} table: {exc}") from exc


def column(table: Any, path: Path, names: tuple[str, ...]) -> Any:
    """The first of `names` the table has, else a DatasetFormatError naming the file and the column."""
    for name in names:
        if name in table.column_names:
            return table.column(name).combine_chunks()
    raise DatasetFormatError(f"{path.name} lacks column {names[0]!r} (has: {', '.join(table.column_names) or 'none'})")


def as_matrix(values: Any, path: Path, name: str) -> np.ndarray:
    """A list-of-floats arrow column as an `(n, d)` float32 matrix; refuses nulls, ragged rows, non-floats."""
    import pyarrow as pa  # lazy: as above
    import pyarrow.compute as pc  # lazy: as above

    if not (pa.types.is_list(values.type) or pa.types.is_large_list(values.type)
            or pa.types.is_fixed_size_list(values.type)):
        raise DatasetFormatError(f"{path.name}: column {name!r} must be a list of floats, got {values.type}")
    if not (pa.types.is_floating(values.type.value_type) or pa.types.is_integer(values.type.value_type)):
        raise DatasetFormatError(f"{path.name}: column {name!r} must hold floats, got {values.type.value_type}")
    if values.null_count:
        raise DatasetFormatError(f"{path.name}: {values.null_count} row(s) have no {name!r} vector")
    if pa.types.is_fixed_size_list(values.type):
        d = values.type.list_size
    else:
        lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
        d = int(lengths[0]) if len(lengths) else 0
        ragged = np.flatnonzero(lengths != d)
        if len(ragged):
            raise DatasetFormatError(f"{path.name}: ragged vectors in {name!r}: row 0 has {d} values but "
                                     f"{len(ragged)} row(s) differ (row {ragged[0]} has {lengths[ragged[0]]})")
    flat = values.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)  # nulls become NaN
    return flat.reshape(len(values), d)


def _ids(values: Any, path: Path, name: str) -> list[str]:
    if values.null_count:
        raise DatasetFormatError(f"{path.name}: {values.null_count} row(s) have no {name!r}")
    return [str(v) for v in values.to_pylist()]


def read_vectors(path: Path) -> tuple[list[str], np.ndarray]:
    """The `id` and `embedding` columns of a corpus or queries table; ids must be unique."""
    table = read_table(path)
    ids = _ids(column(table, path, (ID, "_id")), path, ID)
    dup = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) < len(ids) else []
    if dup:
        raise DatasetFormatError(f"{path.name}: column {ID!r} repeats id(s) {', '.join(map(repr, dup[:3]))}")
    return ids, as_matrix(column(table, path, (EMBEDDING,)), path, EMBEDDING)


def read_qrels(path: Path) -> list[tuple[str, str]]:
    """The relevant (query id, doc id) pairs of a qrels table: relevance > 0, or every pair without one."""
    table = read_table(path)
    queries = _ids(column(table, path, QRELS_COLUMNS["query_id"]), path, "query_id")
    docs = _ids(column(table, path, QRELS_COLUMNS["doc_id"]), path, "doc_id")
    if not any(n in table.column_names for n in QRELS_COLUMNS["relevance"]):
        return list(zip(queries, docs, strict=True))
    raw = column(table, path, QRELS_COLUMNS["relevance"]).to_pylist()
    try:
        relevance = [float(r) for r in raw]
    except (TypeError, ValueError) as exc:
        raise DatasetFormatError(f"{path.name}: column 'relevance' must hold numbers ({exc})") from exc
    return [(q, d) for q, d, r in zip(queries, docs, relevance, strict=True) if r > 0]


def pair_rows(qrels_path: Path, pairs: list[tuple[str, str]], query_ids: list[str],
              doc_ids: list[str]) -> tuple[list[int], np.ndarray]:
    """The kept queries (those with a relevant pair, in file order, as rows of `query_ids`) and the qrels as
    unique (kept query row, corpus row) pairs. Refuses ids the tables do not hold, and no pair at all."""
    doc_row = {d: i for i, d in enumerate(doc_ids)}
    wanted = {q for q, _ in pairs}
    kept = [i for i, q in enumerate(query_ids) if q in wanted]
    query_row = {query_ids[i]: n for n, i in enumerate(kept)}
    unknown = sorted(wanted - set(query_row))[:3] + sorted({d for _, d in pairs} - set(doc_row))[:3]
    if unknown:
        raise DatasetFormatError(f"{qrels_path.name} names ids that are not in the queries / corpus: "
                                 f"{', '.join(map(repr, unknown))}")
    if not pairs:
        raise DatasetFormatError(f"{qrels_path.name} holds no relevant pair (relevance > 0)")
    return kept, np.unique(np.array([(query_row[q], doc_row[d]) for q, d in pairs], dtype=np.int64), axis=0)


def vectors_width(path: Path) -> int:
    """The width of a corpus or queries table from its schema (parquet, fixed size) or its first row."""
    import pyarrow as pa  # lazy: as above
    import pyarrow.parquet as pq  # lazy: as above

    if path.suffix == ".parquet":
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        if EMBEDDING not in names:
            raise DatasetFormatError(f"{path.name} lacks column {EMBEDDING!r} (has: {', '.join(names)})")
        kind = pf.schema_arrow.field(EMBEDDING).type
        if pa.types.is_fixed_size_list(kind):
            return int(kind.list_size)
        first = next(pf.iter_batches(batch_size=1, columns=[EMBEDDING]), None)
        return len(first.column(0)[0]) if first is not None and first.num_rows else 0
    with open(path, encoding="utf-8") as fh:
        line = next((ln for ln in fh if ln.strip()), "{}")
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{path.name}: line 1 is not JSON ({exc})") from exc
    if not isinstance(row, dict) or EMBEDDING not in row:
        has = ", ".join(row) if isinstance(row, dict) else "not an object"
        raise DatasetFormatError(f"{path.name} lacks column {EMBEDDING!r} (has: {has}; read from its first line)")
    if not isinstance(row[EMBEDDING], list):
        raise DatasetFormatError(f"{path.name}: column {EMBEDDING!r} must be a list of floats (line 1)")
    return len(row[EMBEDDING])
