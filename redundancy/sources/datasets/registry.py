"""Dataset specs → ImageDataset. Each source says what identifies its content for the feature cache."""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from redundancy.config import DatasetSpec
from redundancy.errors import DatasetFormatError, DatasetNotFoundError, PathNotAllowedError, UnknownDatasetError
from redundancy.hashing import hash_file
from redundancy.runtime import Runtime
from redundancy.sources.datasets.base import ImageDataset, ImageSplit, PixelSource, to_rgb_image
from redundancy.sources.datasets.embeddings import Columns, load_embeddings
from redundancy.sources.datasets.pairs import load_text_pairs
from redundancy.sources.datasets.text import load_text

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
TORCHVISION = ("cifar10", "cifar100", "oxford_pets", "flowers102")
DATASET_SCHEMES: dict[str, str] = {
    "digits": "scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes); ships offline.",
    "npz:<path>": "arrays x_train, y_train, x_test, y_test (uint8 images), optional classes.",
    "imagefolder:<root>": "class subfolders under <root>/train and <root>/test.",
    "cifar10": "torchvision CIFAR-10 under the data root.",
    "cifar100": "torchvision CIFAR-100 under the data root.",
    "oxford_pets": "torchvision Oxford-IIIT Pets (trainval / test) under the data root.",
    "flowers102": "torchvision Flowers-102 (train / test) under the data root.",
    "embeddings:<path>": "precomputed vectors, no model: .npz (x_train, y_train, x_test, y_test), .parquet "
    "(embedding, label and split columns) or .safetensors; a directory: explicit retrieval pairs, corpus and "
    "queries (id, embedding) and qrels (query_id, doc_id, relevance) as .parquet or .jsonl.",
    "text:<path>": "labelled texts for an hf: model: .csv, .jsonl or .parquet (text, label, optional split columns); "
    "a directory: explicit retrieval pairs, BEIR layout (corpus.jsonl, queries.jsonl, qrels/test.tsv).",
}
PATH_SCHEMES = ("npz", "imagefolder", "embeddings", "text")


def parse_spec(spec: str) -> tuple[str, str]:
    """`npz:/a/b.npz` → ("npz", "/a/b.npz"); `digits` → ("digits", ""). Raises UnknownDatasetError."""
    scheme, _, arg = spec.partition(":")
    scheme = scheme.strip().lower()
    if scheme in PATH_SCHEMES:
        if not arg:
            raise UnknownDatasetError(f"dataset spec {spec!r} needs a path: {scheme}:<path>")
        return scheme, arg
    if scheme in ("digits", *TORCHVISION) and not arg:
        return scheme, ""
    known = ", ".join(DATASET_SCHEMES)
    raise UnknownDatasetError(f"unknown dataset {spec!r}; known: {known}")


def confined(path: Path, roots: Sequence[Path]) -> Path:
    """``path`` with every symlink resolved, when it lies under one of ``roots`` (or ``roots`` is empty);
    else PathNotAllowedError. Called for every file a path dataset opens, as it opens it."""
    if not roots:
        return path
    real = Path(os.path.realpath(path))
    if not any(real.is_relative_to(root) for root in roots):
        raise PathNotAllowedError(f"{path} resolves outside the allowed data roots (a symlink under the "
                                  "dataset's path leads out of them)")
    return real


def check_tree(top: Path, roots: Sequence[Path], limit: int = 1_000_000) -> None:
    """Every directory and file under ``top`` (symlinks followed, each directory once) resolves under one
    of ``roots``; else PathNotAllowedError naming the first that does not."""
    if not roots:
        return
    seen: set[str] = set()
    count = 0
    for dirpath, dirnames, filenames in os.walk(confined(top, roots), followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link loop or a second link to a directory already checked
            dirnames[:] = []
            continue
        seen.add(real)
        for name in (*dirnames, *filenames):
            confined(Path(dirpath) / name, roots)
            count += 1
            if count > limit:
                return


def describe_datasets(runtime: Runtime | None = None) -> list[dict[str, object]]:
    """The catalog: each scheme, what it is, and whether it is available here without downloading."""
    runtime = runtime or Runtime()
    out: list[dict[str, object]] = []
    for spec, text in DATASET_SCHEMES.items():
        local = spec not in TORCHVISION or (runtime.data_root / spec).exists()
        available = local or runtime.allow_download
        out.append({"spec": spec, "description": text, "available": available})
    return out


def load_dataset(spec: str, runtime: Runtime | None = None, fields: DatasetSpec | None = None) -> ImageDataset:
    """The dataset `spec` names; `fields` (the config's dataset section) give the column names of
    embeddings: and text: files."""
    runtime = runtime or Runtime()
    scheme, arg = parse_spec(spec)
    fields = fields or DatasetSpec(spec=spec)
    roots = runtime.confine_to
    if scheme in PATH_SCHEMES:
        top = Path(arg).expanduser()
        if top.is_dir():
            check_tree(top, roots)  # a symlink under the dataset's directory must not lead out of the roots
        elif top.exists():
            confined(top, roots)
    if scheme == "embeddings":
        columns = Columns(fields.embedding_column, fields.label_column, fields.split_column)
        return load_embeddings(spec, Path(arg).expanduser(), columns)
    if scheme == "text" and Path(arg).expanduser().is_dir():
        return load_text_pairs(spec, Path(arg).expanduser())
    if scheme == "text":
        return load_text(spec, Path(arg).expanduser(), fields.text_column, fields.label_column, fields.split_column,
                         fields.test_fraction)
    if scheme == "digits":
        return _digits(spec)
    if scheme == "npz":
        return _npz(spec, Path(arg).expanduser())
    if scheme == "imagefolder":
        return _imagefolder(spec, Path(arg).expanduser(), roots)
    return _torchvision(spec, scheme, runtime)


def _digits(spec: str) -> ImageDataset:
    import sklearn  # lazy: scikit-learn only for the digits dataset
    from sklearn.datasets import load_digits  # lazy: scikit-learn only for the digits dataset
    from sklearn.model_selection import train_test_split  # lazy: scikit-learn only for the digits dataset

    data = load_digits()
    images = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 → 0..255 grey
    idx = np.arange(len(images))
    tr, te = train_test_split(idx, test_size=0.2, random_state=0, stratify=data.target)
    tr, te = np.sort(tr), np.sort(te)
    ident = f"digits:sklearn={sklearn.__version__}:split=0.2/0"
    return ImageDataset(
        spec=spec,
        classes=[str(c) for c in data.target_names],
        train=ImageSplit.from_arrays(images[tr], data.target[tr], f"{ident}:train"),
        test=ImageSplit.from_arrays(images[te], data.target[te], f"{ident}:test"),
    )


def _npz(spec: str, path: Path) -> ImageDataset:
    if not path.is_file():
        raise DatasetNotFoundError(f"npz file not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DatasetFormatError(f"{path} is not a readable .npz archive: {exc}") from exc
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in archive.files]
    if missing:
        raise DatasetFormatError(f"{path} lacks array(s) {', '.join(missing)}")
    ident = f"npz:sha256={hash_file(path)}"
    splits = {}
    for split in ("train", "test"):
        x, y = _npz_array(path, archive, f"x_{split}"), _npz_array(path, archive, f"y_{split}")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DatasetFormatError(f"{path}: y_{split} must be a 1-d integer array, got {y.dtype} {y.shape}")
        if x.ndim not in (3, 4):
            raise DatasetFormatError(f"{path}: x_{split} must be (N, H, W) or (N, H, W, C), got {x.shape}")
        splits[split] = ImageSplit.from_arrays(x, y, f"{ident}:{split}")
    if "classes" in archive.files:
        classes = [str(c) for c in _npz_array(path, archive, "classes")]
    else:
        top = int(max(splits["train"].labels.max(), splits["test"].labels.max()))
        classes = [str(i) for i in range(top + 1)]
    return ImageDataset(spec=spec, classes=classes, train=splits["train"], test=splits["test"])


def _npz_array(path: Path, archive: np.lib.npyio.NpzFile, name: str) -> np.ndarray:
    """One array of the archive; an object array (pickled Python objects, refused) or a damaged member is a
    dataset-format error naming it, not an internal one."""
    try:
        return archive[name]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        if "allow_pickle" in str(exc):
            raise DatasetFormatError(f"{path}: {name} is an object array (pickled Python objects are refused); "
                                     "store numbers, or fixed-width strings for class names") from exc
        raise DatasetFormatError(f"{path}: array {name} cannot be read: {exc}") from exc


def _imagefolder(spec: str, root: Path, roots: Sequence[Path] = ()) -> ImageDataset:
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder not found: {root}")
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DatasetFormatError(f"{root} must contain train/ and test/ with one subfolder per class")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split in ("train", "test"):
        paths, labels = [], []
        for cdir in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            if cdir.name not in index:
                raise DatasetFormatError(f"{root}/{split} has class {cdir.name!r} that train/ lacks")
            for f in sorted(cdir.rglob("*")):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    paths.append(f)
                    labels.append(index[cdir.name])
        listing = "\n".join(f"{p.relative_to(root)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths)
        ident = f"imagefolder:{hashlib.sha256(listing.encode()).hexdigest()}:{split}"
        splits[split] = ImageSplit(
            load=_path_loader(paths, roots), labels=np.asarray(labels, dtype=np.int64), identity=ident
        )
    return ImageDataset(spec=spec, classes=classes, train=splits["train"], test=splits["test"])


def _path_loader(paths: list[Path], roots: Sequence[Path] = ()) -> Callable[[int], Image.Image]:
    def load(i: int) -> Image.Image:  # resolved again as it is opened: a link swapped since the listing
        with Image.open(confined(paths[i], roots)) as im:
            return im.convert("RGB")

    return load


def _torchvision(spec: str, scheme: str, runtime: Runtime) -> ImageDataset:
    from torchvision import datasets as tvd  # lazy: torchvision datasets only for a torchvision spec

    root = runtime.data_root / scheme
    download = runtime.allow_download
    makers = {
        "cifar10": lambda split: tvd.CIFAR10(str(root), train=split == "train", download=download),
        "cifar100": lambda split: tvd.CIFAR100(str(root), train=split == "train", download=download),
        "oxford_pets": lambda split: tvd.OxfordIIITPet(
            str(root), split="trainval" if split == "train" else "test", download=download
        ),
        "flowers102": lambda split: tvd.Flowers102(str(root), split=split, download=download),
    }
    splits, classes = {}, None
    for split in ("train", "test"):
        try:
            ds = makers[scheme](split)
        except (RuntimeError, FileNotFoundError, OSError) as exc:
            raise DatasetNotFoundError(
                f"{scheme} is not under {root} ({exc}); place it there or allow downloads "
                "(ADVISOR_ALLOW_DOWNLOAD=1 / --allow-download)"
            ) from exc
        labels = _torchvision_labels(ds)
        classes = classes or [str(c) for c in getattr(ds, "classes", range(int(labels.max()) + 1))]
        splits[split] = ImageSplit(
            load=lambda i, ds=ds: to_rgb_image(np.asarray(ds[i][0].convert("RGB"))),
            labels=labels,
            identity=f"torchvision:{scheme}:{split}:{len(labels)}",
            pixels=PixelSource.of(getattr(ds, "data", None)),  # CIFAR-10/100 keep a uint8 (N, 32, 32, 3) array
        )
    assert classes is not None
    return ImageDataset(spec=spec, classes=classes, train=splits["train"], test=splits["test"])


def _torchvision_labels(ds: object) -> np.ndarray:
    for attr in ("targets", "_labels", "_label"):
        if hasattr(ds, attr):
            return np.asarray(getattr(ds, attr), dtype=np.int64)
    return np.asarray([ds[i][1] for i in range(len(ds))], dtype=np.int64)  # type: ignore[arg-type]
