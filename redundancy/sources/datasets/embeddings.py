"""`embeddings:<path>`: precomputed vectors as a dataset, no model.

Three file types, chosen by extension (`.npz`, `.parquet`, `.safetensors`) or, without one, by the
file's first bytes:

- `.npz`: arrays `x_train`, `y_train`, `x_test`, `y_test` (vectors float16/32/64, labels integers
  or strings), optional `classes` (names of integer labels). Read with `allow_pickle=False`.
  **Or explicit retrieval pairs** (`task: retrieval` only): `corpus` (n_c × d), `queries` (n_q × d) and
  `qrels` (m × 2 or m × 3 integers: query row, corpus row[, relevance]; rows with relevance ≤ 0 are
  dropped, relevance is binary). The corpus becomes the train split, the queries the test split.
- **a directory** of explicit retrieval pairs as tables: `corpus` and `queries` (`id`, `embedding`) and
  `qrels` (`query_id`, `doc_id`[, `relevance`]), each `.parquet` or `.jsonl` (`pair_files`).
- `.parquet`: one row per sample; an embedding column (fixed-size list or list of floats), a label
  column (integers or strings) and a split column (`train` / `test`); the column names come from
  the dataset fields `embedding_column`, `label_column`, `split_column`.
- `.safetensors`: tensors `x_train`, `y_train`, `x_test`, `y_test` (integer labels), optional class
  names as a JSON list in the header's `__metadata__["classes"]`.

`check_embeddings` reads headers only (array shapes and dtypes, the parquet schema): what a server
can afford at submission. `load_embeddings` reads the vectors and checks their values (NaN/inf rows,
ragged lists, labels)."""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from redundancy.errors import DatasetFormatError, DatasetNotFoundError
from redundancy.hashing import hash_file, hash_json
from redundancy.sources.datasets import pair_files
from redundancy.sources.datasets.base import ImageDataset
from redundancy.sources.datasets.rows import RowSplit, encode_labels

# The widest representation accepted: the probe keeps a d × d float64 Gram (2 GiB at 16,384).
MAX_EMBEDDING_WIDTH = 16_384
EmbeddingsFormat = Literal["npz", "parquet", "safetensors", "pairs"]  # pairs: a directory of tables
SPLIT_NAMES = ("train", "test")
ARRAYS = ("x_train", "y_train", "x_test", "y_test")
PAIR_ARRAYS = ("corpus", "queries", "qrels")
PAIR_CLASSES = ["corpus", "query"]  # the labels of an explicit-pairs file's rows (relevance is the qrels)
_FLOAT_KINDS = ("float16", "float32", "float64")
_SAFETENSORS_FLOATS = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}
_SAFETENSORS_INTS = {"I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64"}


@dataclass(frozen=True)
class Columns:
    """Parquet column names (the dataset fields `embedding_column`, `label_column`, `split_column`)."""

    embedding: str = "embedding"
    label: str = "label"
    split: str = "split"


@dataclass(frozen=True)
class EmbeddingsHeader:
    """What the header says: enough to refuse a bad file at submission, and to describe the vectors."""

    path: Path
    format: EmbeddingsFormat
    d: int
    sizes: dict[str, int]  # rows per split where the header tells (npz, safetensors); parquet: {"all": n}


def embeddings_format(path: Path) -> EmbeddingsFormat:
    """The file type by extension, else by magic bytes (zip: npz; `PAR1`: parquet; an 8-byte length
    and a JSON header: safetensors)."""
    suffix = path.suffix.lower()
    if suffix in (".npz", ".parquet", ".safetensors"):
        return suffix[1:]  # type: ignore[return-value]
    with open(path, "rb") as fh:
        head = fh.read(9)
    if head[:4] == b"PK\x03\x04":
        return "npz"
    if head[:4] == b"PAR1":
        return "parquet"
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < (1 << 30):
        return "safetensors"
    raise DatasetFormatError(
        f"{path.name}: not a .npz, .parquet or .safetensors file (by extension or by its first bytes)"
    )


def check_embeddings(path: Path, columns: Columns = Columns()) -> EmbeddingsHeader:
    """Cheap checks from the file's header: the arrays or columns exist, shapes and dtypes fit, the
    width is within 1 .. MAX_EMBEDDING_WIDTH. Raises DatasetNotFoundError / DatasetFormatError."""
    if not path.is_file() and not path.is_dir():
        raise DatasetNotFoundError(f"embeddings file not found: {path}")
    fmt = "pairs" if path.is_dir() else embeddings_format(path)
    try:
        if fmt == "pairs":
            header = _pairs_dir_header(path)
        elif fmt == "npz":
            header = _npz_header(path)
        elif fmt == "safetensors":
            header = _safetensors_header(path)
        else:
            header = _parquet_header(path, columns)
    except (DatasetFormatError, DatasetNotFoundError):
        raise
    except Exception as exc:  # a truncated or foreign file: the reader's own words
        raise DatasetFormatError(f"{path.name} is not a readable .{fmt} file: {type(exc).__name__}: {exc}") from exc
    _check_width(path, header.d)
    return header


def load_embeddings(spec: str, path: Path, columns: Columns = Columns()) -> ImageDataset:
    """The file's vectors as a dataset of `RowSplit`s (float32 rows), content-hashed."""
    header = check_embeddings(path, columns)
    if header.format == "pairs":
        return load_pairs_dir(spec, path)
    if header.format == "npz" and is_pairs(path):
        return load_pairs(spec, path)
    if header.format == "npz":
        x, y, classes = _npz_arrays(path)
    elif header.format == "safetensors":
        x, y, classes = _safetensors_arrays(path)
    else:
        x, y, classes = _parquet_arrays(path, columns)
    for split in SPLIT_NAMES:
        _check_values(path, split, x[split], header.d)
        if len(y[split]) != len(x[split]):
            raise DatasetFormatError(
                f"{path.name}: {len(x[split])} {split} vectors but {len(y[split])} {split} labels"
            )
    labels, classes = encode_labels(y, path.name, classes)
    ident = f"embeddings:{header.format}:sha256={hash_file(path)}"
    if header.format == "parquet":
        ident += f":{columns.embedding}/{columns.label}/{columns.split}"
    splits = {
        s: RowSplit(np.ascontiguousarray(x[s], dtype=np.float32), labels[s], f"{ident}:{s}") for s in SPLIT_NAMES
    }
    return ImageDataset(spec=spec, classes=classes, train=splits["train"], test=splits["test"])  # type: ignore[arg-type]


def _check_width(path: Path, d: int) -> None:
    if d < 1:
        raise DatasetFormatError(f"{path.name}: the vectors have width 0")
    if d > MAX_EMBEDDING_WIDTH:
        raise DatasetFormatError(
            f"{path.name}: width {d:,} is above the cap of {MAX_EMBEDDING_WIDTH:,} dimensions "
            "(reduce the vectors first, e.g. with PCA)"
        )


def _check_values(path: Path, split: str, x: np.ndarray, d: int) -> None:
    if x.ndim != 2 or x.shape[1] != d:
        raise DatasetFormatError(f"{path.name}: x_{split} must be (N, {d}), got {x.shape}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DatasetFormatError(
            f"{path.name}: {len(rows)} {split} vector(s) hold NaN or inf (rows {', '.join(map(str, rows[:5]))}"
            f"{' …' if len(rows) > 5 else ''})"
        )


def _check_float(path: Path, name: str, dtype: str) -> None:
    if dtype not in _FLOAT_KINDS:
        raise DatasetFormatError(f"{path.name}: {name} must be float16, float32 or float64, got {dtype}")


# --- npz ---------------------------------------------------------------------------------------


def _npz_header(path: Path) -> EmbeddingsHeader:
    shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _fortran, dtype = read(fh)
            shapes[name] = (tuple(shape), dtype)
    for name, (_shape, dtype) in shapes.items():
        if dtype.hasobject:
            raise DatasetFormatError(
                f"{path.name}: {name} is an object array (pickled Python objects are refused); "
                "store numbers, or fixed-width strings for labels"
            )
    if "qrels" in shapes:
        return _npz_pairs_header(path, shapes)
    missing = [a for a in ARRAYS if a not in shapes]
    if missing:
        has = ", ".join(shapes) or "none"
        raise DatasetFormatError(f"{path.name} lacks array(s) {', '.join(missing)} (has: {has})")
    d = None
    for split in SPLIT_NAMES:
        shape, dtype = shapes[f"x_{split}"]
        if len(shape) != 2:
            raise DatasetFormatError(f"{path.name}: x_{split} must be 2-d (N, d), got shape {shape}")
        _check_float(path, f"x_{split}", dtype.name)
        if d is not None and shape[1] != d:
            raise DatasetFormatError(f"{path.name}: x_train has width {d} but x_test has width {shape[1]}")
        d = shape[1]
        y_shape, y_dtype = shapes[f"y_{split}"]
        if len(y_shape) != 1 or y_shape[0] != shape[0]:
            raise DatasetFormatError(f"{path.name}: y_{split} must be 1-d with {shape[0]} labels, got shape {y_shape}")
        if y_dtype.kind not in "iuUS":
            raise DatasetFormatError(f"{path.name}: y_{split} must be integers or strings, got {y_dtype}")
    assert d is not None
    return EmbeddingsHeader(path, "npz", int(d), {s: shapes[f"x_{s}"][0][0] for s in SPLIT_NAMES})


def _npz_pairs_header(path: Path, shapes: dict[str, tuple[tuple[int, ...], np.dtype]]) -> EmbeddingsHeader:
    """Explicit retrieval pairs: `corpus` and `queries` of one width, `qrels` (m, 2 or 3) integers."""
    missing = [a for a in PAIR_ARRAYS if a not in shapes]
    if missing:
        raise DatasetFormatError(f"{path.name} has qrels but lacks array(s) {', '.join(missing)} "
                                 f"(has: {', '.join(shapes)})")
    for name in ("corpus", "queries"):
        shape, dtype = shapes[name]
        if len(shape) != 2:
            raise DatasetFormatError(f"{path.name}: {name} must be 2-d (N, d), got shape {shape}")
        _check_float(path, name, dtype.name)
    if shapes["corpus"][0][1] != shapes["queries"][0][1]:
        raise DatasetFormatError(f"{path.name}: corpus has width {shapes['corpus'][0][1]} but queries "
                                 f"{shapes['queries'][0][1]}")
    q_shape, q_dtype = shapes["qrels"]
    if len(q_shape) != 2 or q_shape[1] not in (2, 3) or q_dtype.kind not in "iu":
        raise DatasetFormatError(f"{path.name}: qrels must be integers of shape (m, 2) or (m, 3) (query row, "
                                 f"corpus row[, relevance]), got {q_dtype} {q_shape}")
    return EmbeddingsHeader(path, "npz", int(shapes["corpus"][0][1]),
                            {"train": shapes["corpus"][0][0], "test": shapes["queries"][0][0]})


def load_pairs(spec: str, path: Path) -> ImageDataset:
    """An explicit-pairs .npz as a dataset: the corpus as train (label `corpus`), the queries as test
    (label `query`), and the relevant (query, corpus) rows as `qrels`."""
    header = check_embeddings(path)
    with np.load(path, allow_pickle=False) as archive:
        x = {"train": archive["corpus"], "test": archive["queries"]}
        qrels = np.asarray(archive["qrels"], dtype=np.int64)
    for split in SPLIT_NAMES:
        _check_values(path, split, x[split], header.d)
    if qrels.shape[1] == 3:
        qrels = qrels[qrels[:, 2] > 0]
    qrels = np.unique(qrels[:, :2], axis=0)
    for col, name, n in ((0, "query", len(x["test"])), (1, "corpus", len(x["train"]))):
        bad = (qrels[:, col] < 0) | (qrels[:, col] >= n)
        if bad.any():
            raise DatasetFormatError(f"{path.name}: qrels name {name} row {int(qrels[bad][0, col])}, outside "
                                     f"0..{n - 1}")
    return _pairs_dataset(spec, f"embeddings:pairs:sha256={hash_file(path)}", x, qrels)


def _pair_tables(path: Path) -> tuple[Path, Path, Path]:
    return (pair_files.find_table(path, "corpus"), pair_files.find_table(path, "queries"),
            pair_files.find_table(path, "qrels", (*pair_files.TABLE_SUFFIXES, ".tsv")))


def _pairs_dir_header(path: Path) -> EmbeddingsHeader:
    """A directory of explicit pairs: the three tables exist and corpus and queries have one width."""
    corpus, queries, _qrels = _pair_tables(path)
    d_c, d_q = pair_files.vectors_width(corpus), pair_files.vectors_width(queries)
    if d_c != d_q:
        raise DatasetFormatError(f"{path.name}/: {corpus.name} has width {d_c} but {queries.name} {d_q}")
    return EmbeddingsHeader(path, "pairs", d_c, {})


def load_pairs_dir(spec: str, path: Path) -> ImageDataset:
    """A directory of explicit pairs as a dataset, as `load_pairs` makes of an .npz: the corpus as train, the
    queries with a relevant pair as test, the relevant (query row, corpus row) pairs as `qrels`."""
    corpus_path, queries_path, qrels_path = _pair_tables(path)
    doc_ids, corpus = pair_files.read_vectors(corpus_path)
    query_ids, queries = pair_files.read_vectors(queries_path)
    kept, qrels = pair_files.pair_rows(qrels_path, pair_files.read_qrels(qrels_path), query_ids, doc_ids)
    x = {"train": corpus, "test": queries[kept]}
    if corpus.shape[1] != queries.shape[1]:
        raise DatasetFormatError(f"{path.name}/: corpus has width {corpus.shape[1]} but queries {queries.shape[1]}")
    _check_width(path, corpus.shape[1])
    for split in SPLIT_NAMES:
        _check_values(path, split, x[split], corpus.shape[1])
    return _pairs_dataset(spec, f"embeddings:pairs-dir:sha256={content_hash(path)}", x, qrels)


def _pairs_dataset(spec: str, ident: str, x: dict[str, np.ndarray], qrels: np.ndarray) -> ImageDataset:
    """Explicit pairs as a dataset: the corpus (`x["train"]`) as train, the queries (`x["test"]`) as test, the
    relevant (query row, corpus row) pairs as `qrels`; the rows' labels only say which side they are."""
    splits = {s: RowSplit(np.ascontiguousarray(x[s], dtype=np.float32),
                          np.full(len(x[s]), 0 if s == "train" else 1, dtype=np.int64), f"{ident}:{s}")
              for s in SPLIT_NAMES}
    return ImageDataset(spec=spec, classes=list(PAIR_CLASSES), train=splits["train"],  # type: ignore[arg-type]
                        test=splits["test"], qrels=qrels)  # type: ignore[arg-type]


def content_hash(path: Path) -> str:
    """sha256 of an embeddings file, or of a pairs directory's three tables (names and contents)."""
    if not path.is_dir():
        return hash_file(path)
    return hash_json({p.name: hash_file(p) for p in _pair_tables(path)})


def is_pairs(path: Path) -> bool:
    """Whether an embeddings file is an explicit-pairs .npz (it holds `qrels`)."""
    if not path.is_file() or embeddings_format(path) != "npz":
        return False
    with zipfile.ZipFile(path) as zf:
        return any(info.filename.removesuffix(".npy") == "qrels" for info in zf.infolist())


def _npz_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str] | None]:
    with np.load(path, allow_pickle=False) as archive:
        x = {s: archive[f"x_{s}"] for s in SPLIT_NAMES}
        y = {s: archive[f"y_{s}"] for s in SPLIT_NAMES}
        classes = [str(c) for c in archive["classes"]] if "classes" in archive.files else None
    return x, y, classes


# --- safetensors -------------------------------------------------------------------------------


def _safetensors_meta(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > path.stat().st_size - 8:
            raise DatasetFormatError(f"{path.name}: safetensors header length {n} runs past the file's end")
        return json.loads(fh.read(n))


def _safetensors_header(path: Path) -> EmbeddingsHeader:
    meta = _safetensors_meta(path)
    tensors = {k: v for k, v in meta.items() if k != "__metadata__"}
    missing = [a for a in ARRAYS if a not in tensors]
    if missing:
        has = ", ".join(tensors) or "none"
        raise DatasetFormatError(f"{path.name} lacks tensor(s) {', '.join(missing)} (has: {has})")
    d = None
    for split in SPLIT_NAMES:
        x, y = tensors[f"x_{split}"], tensors[f"y_{split}"]
        if len(x["shape"]) != 2:
            raise DatasetFormatError(f"{path.name}: x_{split} must be 2-d (N, d), got shape {x['shape']}")
        if x["dtype"] not in _SAFETENSORS_FLOATS:
            raise DatasetFormatError(f"{path.name}: x_{split} must be a float tensor, got {x['dtype']}")
        if d is not None and x["shape"][1] != d:
            raise DatasetFormatError(f"{path.name}: x_train has width {d} but x_test has width {x['shape'][1]}")
        d = x["shape"][1]
        if y["dtype"] not in _SAFETENSORS_INTS:
            raise DatasetFormatError(f"{path.name}: y_{split} must be an integer tensor, got {y['dtype']}")
        if len(y["shape"]) != 1 or y["shape"][0] != x["shape"][0]:
            raise DatasetFormatError(
                f"{path.name}: y_{split} must be 1-d with {x['shape'][0]} labels, got {y['shape']}"
            )
    assert d is not None
    return EmbeddingsHeader(path, "safetensors", int(d), {s: int(tensors[f"x_{s}"]["shape"][0]) for s in SPLIT_NAMES})


def _safetensors_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str] | None]:
    from safetensors.torch import load_file  # lazy: torch reads bfloat16, which numpy cannot

    tensors = load_file(str(path), device="cpu")
    x = {s: tensors[f"x_{s}"].float().numpy() for s in SPLIT_NAMES}
    y = {s: tensors[f"y_{s}"].numpy() for s in SPLIT_NAMES}
    raw = (_safetensors_meta(path).get("__metadata__") or {}).get("classes")
    classes = None
    if raw is not None:
        try:
            classes = [str(c) for c in json.loads(raw)]
        except (TypeError, ValueError) as exc:
            raise DatasetFormatError(f"{path.name}: __metadata__ classes must be a JSON list of names") from exc
    return x, y, classes


# --- parquet -----------------------------------------------------------------------------------


def _parquet_header(path: Path, columns: Columns) -> EmbeddingsHeader:
    import pyarrow as pa  # lazy: the optional `text` extra
    import pyarrow.parquet as pq  # lazy: as above

    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    missing = [c for c in (columns.embedding, columns.label, columns.split) if c not in schema.names]
    if missing:
        raise DatasetFormatError(
            f"{path.name} lacks column(s) {', '.join(map(repr, missing))} (has: {', '.join(schema.names)}); "
            "set embedding_column, label_column, split_column"
        )
    emb = schema.field(columns.embedding).type
    if not (pa.types.is_list(emb) or pa.types.is_large_list(emb) or pa.types.is_fixed_size_list(emb)):
        raise DatasetFormatError(f"{path.name}: column {columns.embedding!r} must be a list of floats, got {emb}")
    if not pa.types.is_floating(emb.value_type):
        raise DatasetFormatError(f"{path.name}: column {columns.embedding!r} must hold floats, got {emb.value_type}")
    label = schema.field(columns.label).type
    if pa.types.is_dictionary(label):
        label = label.value_type
    if not (pa.types.is_integer(label) or pa.types.is_string(label) or pa.types.is_large_string(label)):
        raise DatasetFormatError(
            f"{path.name}: label column {columns.label!r} must be integers or strings, got {label}"
        )
    if pa.types.is_fixed_size_list(emb):
        d = emb.list_size
    else:  # the first vector's length; ragged rows are found when the file is read
        first = next(pf.iter_batches(batch_size=1, columns=[columns.embedding]), None)
        d = len(first.column(0)[0]) if first is not None and first.num_rows else 0
    return EmbeddingsHeader(path, "parquet", int(d), {"all": pf.metadata.num_rows})


def _parquet_arrays(path: Path, columns: Columns) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], None]:
    import pyarrow as pa  # lazy: the optional `text` extra
    import pyarrow.parquet as pq  # lazy: as above

    table = pq.read_table(path, columns=[columns.embedding, columns.label, columns.split])
    x_all = pair_files.as_matrix(table.column(columns.embedding).combine_chunks(), path, columns.embedding)
    labels = table.column(columns.label)
    if labels.null_count:
        raise DatasetFormatError(f"{path.name}: {labels.null_count} row(s) have no label in {columns.label!r}")
    if pa.types.is_dictionary(labels.type):
        labels = labels.cast(labels.type.value_type)
    y_all = np.asarray(labels.to_pylist(), dtype=object if not pa.types.is_integer(labels.type) else np.int64)
    split = np.asarray(table.column(columns.split).cast(pa.string()).to_pylist(), dtype=object)
    odd = sorted({str(s) for s in split.tolist()} - set(SPLIT_NAMES))
    if odd:
        raise DatasetFormatError(
            f"{path.name}: split column {columns.split!r} holds {', '.join(map(repr, odd[:5]))}; expected train or test"
        )
    x = {s: x_all[split == s] for s in SPLIT_NAMES}
    y = {s: y_all[split == s] for s in SPLIT_NAMES}
    return x, y, None
