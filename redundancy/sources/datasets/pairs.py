"""`text:<directory>`: explicit retrieval pairs of texts, in the BEIR layout, for an `hf:` encoder.

- `corpus.jsonl`: one object per line with `_id` and `text` (and optional `title`, prepended to the
  text with a space, as BEIR's sentence-transformers evaluation does);
- `queries.jsonl`: `_id` and `text`;
- `qrels/test.tsv` (BEIR) or `qrels.tsv`: a header line, then `query-id <tab> corpus-id <tab> score`;
  or `qrels/test.jsonl`, `qrels.jsonl`, `qrels.parquet`: columns `query_id`, `doc_id`, optional
  `relevance` (BEIR's `query-id`, `corpus-id`, `score` too; `pair_files.read_qrels`). Pairs with a
  score ≤ 0 are dropped, relevance is binary.

Only the queries named in the qrels are kept (in file order); the corpus is every document. The corpus
becomes the train split (label `corpus`), the queries the test split (label `query`), and the qrels
(query row, corpus row) the dataset's `qrels`: `task: retrieval` only (`pipeline.prepare_pairs`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from redundancy.errors import DatasetFormatError, DatasetNotFoundError
from redundancy.hashing import hash_file, hash_json
from redundancy.sources.datasets.base import ImageDataset
from redundancy.sources.datasets.pair_files import pair_rows, read_qrels
from redundancy.sources.datasets.rows import RowSplit

PAIR_CLASSES = ["corpus", "query"]
QRELS_FILES = ("qrels/test.tsv", "qrels.tsv", "qrels/test.jsonl", "qrels.jsonl", "qrels.parquet")


def _jsonl(path: Path) -> list[dict[str, object]]:
    if not path.is_file():
        raise DatasetNotFoundError(f"{path.parent.name}/: no {path.name} (a text: directory is BEIR-style "
                                   "explicit pairs: corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                obj = json.loads(line)
                if not isinstance(obj, dict) or not isinstance(obj.get("_id"), str | int) or not isinstance(
                        obj.get("text"), str):
                    raise DatasetFormatError(f"{path.name}: line {n} is not an object with `_id` and `text`")
                rows.append(obj)
    return rows


def _qrels(directory: Path) -> tuple[Path, list[tuple[str, str]]]:
    path = next((directory / f for f in QRELS_FILES if (directory / f).is_file()), None)
    if path is None:
        raise DatasetNotFoundError(f"{directory.name}/: no {' or '.join(QRELS_FILES)}")
    if path.suffix != ".tsv":
        return path, read_qrels(path)
    pairs = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader, None)  # the header line
        for n, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) < 3:
                raise DatasetFormatError(f"{path.name}: line {n} needs query-id, corpus-id and score")
            try:
                score = float(row[2])
            except ValueError as exc:
                raise DatasetFormatError(f"{path.name}: line {n}: score {row[2]!r} is not a number") from exc
            if score > 0:
                pairs.append((row[0], row[1]))
    return path, pairs


def load_text_pairs(spec: str, directory: Path) -> ImageDataset:
    """The directory's corpus and queries as text `RowSplit`s, with the relevant pairs as `qrels`."""
    corpus = _jsonl(directory / "corpus.jsonl")
    queries = _jsonl(directory / "queries.jsonl")
    qrels_path, pairs = _qrels(directory)
    rows, qrels = pair_rows(qrels_path, pairs, [str(q["_id"]) for q in queries], [str(d["_id"]) for d in corpus])
    kept = [queries[i] for i in rows]
    texts = {
        "train": np.array([(f"{d['title']} {d['text']}" if d.get("title") else str(d["text"])) for d in corpus],
                          dtype=object),
        "test": np.array([str(q["text"]) for q in kept], dtype=object),
    }
    ident = "text-pairs:" + hash_json([hash_file(directory / "corpus.jsonl"), hash_file(directory / "queries.jsonl"),
                                       hash_file(qrels_path)])
    splits = {s: RowSplit(texts[s], np.full(len(texts[s]), 0 if s == "train" else 1, dtype=np.int64), f"{ident}:{s}")
              for s in ("train", "test")}
    return ImageDataset(spec=spec, classes=list(PAIR_CLASSES), train=splits["train"],  # type: ignore[arg-type]
                        test=splits["test"], qrels=qrels)  # type: ignore[arg-type]
