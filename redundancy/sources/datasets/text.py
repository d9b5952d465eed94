"""`text:<path>`: labelled texts for a Hugging Face encoder (`hf:` models).

`.csv` (header row), `.jsonl` (one object per line) or `.parquet`, with a text column, a label column
(integers or strings) and optionally a split column (`train` / `test`); the names come from the
dataset fields `text_column`, `label_column`, `split_column`. Without a split column a seeded,
stratified `test_fraction` of the rows is the test split."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from redundancy.errors import DatasetFormatError, DatasetNotFoundError
from redundancy.hashing import hash_file, hash_json
from redundancy.sources.datasets.base import ImageDataset
from redundancy.sources.datasets.rows import RowSplit, encode_labels

TEXT_SUFFIXES = (".csv", ".jsonl", ".parquet")
SPLIT_SEED = 0  # the fixed seed of the test fraction


def load_text(
    spec: str, path: Path, text_column: str = "text", label_column: str = "label", split_column: str = "split",
    test_fraction: float = 0.2,
) -> ImageDataset:
    """The file's texts as a dataset of `RowSplit`s (object arrays of str), content-hashed."""
    if not path.is_file():
        raise DatasetNotFoundError(f"text file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        raise DatasetFormatError(
            f"{path.name}: a text dataset is {', '.join(TEXT_SUFFIXES)}, not {suffix or 'a file without a suffix'}"
        )
    wanted = [text_column, label_column, split_column]
    cols, names = _read(path, suffix, wanted)
    missing = [c for c in (text_column, label_column) if c not in cols]
    if missing:
        raise DatasetFormatError(
            f"{path.name} lacks column(s) {', '.join(map(repr, missing))} (has: {', '.join(names) or 'none'}); "
            "set text_column and label_column"
        )
    texts, labels = cols[text_column], cols[label_column]
    empty = [i for i, t in enumerate(texts.tolist()) if not isinstance(t, str)]
    if empty:
        raise DatasetFormatError(f"{path.name}: {len(empty)} row(s) have no text in {text_column!r} (row {empty[0]})")
    if split_column in cols:
        split = np.asarray([str(s) for s in cols[split_column].tolist()], dtype=object)
        odd = sorted(set(split.tolist()) - {"train", "test"})
        if odd:
            raise DatasetFormatError(
                f"{path.name}: split column {split_column!r} holds {', '.join(map(repr, odd[:5]))}; "
                "expected train or test"
            )
        how = f"column={split_column}"
    else:
        split = _fraction_split(labels, test_fraction)
        how = f"fraction={test_fraction:g}/seed={SPLIT_SEED}"
    labels = _labels(labels, from_csv=suffix == ".csv")
    raw = {s: labels[split == s] for s in ("train", "test")}
    y, classes = encode_labels(raw, f"{path.name} ({label_column!r})")
    ident = "text:" + hash_json([hash_file(path), text_column, label_column, how])
    splits = {s: RowSplit(texts[split == s], y[s], f"{ident}:{s}") for s in ("train", "test")}
    return ImageDataset(spec=spec, classes=classes, train=splits["train"], test=splits["test"])  # type: ignore[arg-type]


def _labels(y: np.ndarray, from_csv: bool) -> np.ndarray:
    """Labels as read (object arrays) → int64 when every one is an integer (in a CSV: every cell is
    an integer's digits), else as they are."""
    values = y.tolist()
    if from_csv and values and all(isinstance(v, str) and v.strip().lstrip("-").isdigit() for v in values):
        return np.asarray([int(v) for v in values], dtype=np.int64)
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64)
    return y


def _fraction_split(labels: np.ndarray, fraction: float) -> np.ndarray:
    """"train"/"test" per row: about `fraction` of each class (at least one of a class with two or more
    rows) goes to test, seeded by SPLIT_SEED."""
    keys = np.asarray([str(v) for v in labels.tolist()], dtype=object)
    out = np.full(len(keys), "train", dtype=object)
    rng = np.random.default_rng([SPLIT_SEED, len(keys)])
    for c in sorted(set(keys.tolist())):
        idx = rng.permutation(np.flatnonzero(keys == c))
        take = min(max(int(round(fraction * len(idx))), 1), len(idx) - 1) if len(idx) >= 2 else 0
        out[idx[:take]] = "test"
    return out


def _read(path: Path, suffix: str, wanted: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The wanted columns that the file has, as object arrays, and the names of all its columns."""
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq  # lazy: the optional `text` extra

            names = pq.read_schema(path).names
            table = pq.read_table(path, columns=[c for c in dict.fromkeys(wanted) if c in names])
            return {c: np.asarray(table.column(c).to_pylist(), dtype=object) for c in table.column_names}, names
        rows = _csv_rows(path) if suffix == ".csv" else _jsonl_rows(path)
    except DatasetFormatError:
        raise
    except Exception as exc:  # unreadable bytes, bad quoting, a truncated file
        raise DatasetFormatError(f"{path.name} is not a readable {suffix} file: {type(exc).__name__}: {exc}") from exc
    present = list(dict.fromkeys(k for r in rows for k in r))
    cols = {c: np.asarray([r.get(c) for r in rows], dtype=object) for c in dict.fromkeys(wanted) if c in present}
    return cols, present


def _csv_rows(path: Path) -> list[dict[str, object]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows: list[dict[str, object]] = []
        for row in csv.DictReader(fh):
            rows.append({k: v for k, v in row.items() if k is not None})
        return rows


def _jsonl_rows(path: Path) -> list[dict[str, object]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise DatasetFormatError(f"{path.name}: line {n} is not a JSON object")
                rows.append(obj)
    return rows
