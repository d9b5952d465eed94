"""One streaming pass over the images: float64 sufficient statistics for train, stored features for
val/test.

The train split feeds `GramAccumulator` (`n`, `Σx`, `XᵀX`, per-class sums) on the model's device,
copied to the host once at the end; its samples are stored only where a probe needs them
(logistic). Validation (held out from train) and test features are streamed into a feature store
(`redundancy.sources.features_store`): float16 by default, memory-mapped on read, never held in memory.

Images reach the model in one of two ways:

- array datasets (npz, digits, CIFAR): uint8 batches are uploaded as they are and resized and
  normalised on the device (`BatchTransform`, the same numbers as timm's PIL transform);
- file datasets: a DataLoader runs the PIL half of timm's transform per image (decode, resize, crop:
  worker processes and pinned memory on CUDA), batches of uint8 pixels are copied without blocking,
  and `ToTensor → Normalize` runs once per batch on the device (`split_at_tensor`); a transform
  that cannot be cut there runs whole, per image.

The model runs channels-last, under bf16 autocast on CUDA and in fp32 on the CPU. Always inference mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from redundancy.errors import Cancelled
from redundancy.progress import ImagesProgressFn
from redundancy.sources.datasets.base import ImageSplit
from redundancy.sources.datasets.batch_transform import BatchTransform, split_at_tensor
from redundancy.sources.encoders.base import FeatureSource
from redundancy.sources.features_store import (
    STORE_FORMAT,
    FeatureDtype,
    FeatureWriter,
    load_stats,
    open_array,
    read_meta,
    save_stats,
    sum_stats,
    write_meta,
)
from redundancy.sources.models.layers import FeatureExtractor
from redundancy.sources.stats import GramAccumulator, GramStats

# Bump when anything that changes extracted features changes in this code.
FEATURES_VERSION = "2"
SPLITS = ("train", "val", "test")

_COPY_ROWS = 65536  # rows per block when shard slices are copied into the whole store


@dataclass
class Features:
    stats: GramStats  # the train (fit) split
    x_train: np.ndarray | None  # (n, d), same rows as `stats`; None unless kept (logistic probe)
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    pooling: str
    qrels: np.ndarray | None = None  # explicit retrieval pairs (query row, corpus row of train ++ val); not stored

    @property
    def d(self) -> int:
        return self.stats.d

    def save(self, path: Path, dtype: FeatureDtype = "float16") -> None:
        """Write a feature store at `path` (a directory) from in-memory features."""
        path.mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            x = getattr(self, f"x_{split}")
            if x is not None:
                w = FeatureWriter(path / f"x_{split}.npy", len(x), dtype)
                w.append(np.asarray(x))
                w.close()
        _finish_store(path, self.stats, self.y_train, self.y_val, self.y_test, self.pooling, dtype,
                      self.x_train is not None)

    @classmethod
    def load(cls, path: Path) -> Features:
        """Open a complete store: statistics in memory, feature matrices memory-mapped."""
        meta = read_meta(path)
        if meta is None:
            raise FileNotFoundError(f"no complete feature store at {path}")
        arrays = {f"y_{s}": np.load(path / f"y_{s}.npy") for s in SPLITS}
        for s in SPLITS:
            arrays[f"x_{s}"] = open_array(path / f"x_{s}.npy") if (path / f"x_{s}.npy").is_file() else None
        return cls(stats=load_stats(path / "stats.npz"), pooling=str(meta["pooling"]), **arrays)


def _finish_store(
    path: Path, stats: GramStats, y_train: np.ndarray, y_val: np.ndarray, y_test: np.ndarray, pooling: str,
    dtype: FeatureDtype, has_train: bool,
) -> None:
    save_stats(stats, path / "stats.npz")
    for name, y in (("train", y_train), ("val", y_val), ("test", y_test)):
        np.save(path / f"y_{name}.npy", np.asarray(y, dtype=np.int64))
    write_meta(path, {"pooling": pooling, "dtype": dtype, "train_features": has_train})


def has_store(path: Path, need_train: bool) -> bool:
    meta = read_meta(path)
    return meta is not None and (bool(meta.get("train_features")) or not need_train)


def _remote_fs(url: str) -> tuple[object, str]:
    from fsspec.core import url_to_fs  # lazy: only a run with a remote feature cache needs it

    fs, root = url_to_fs(url)
    fs.invalidate_cache()  # a shared instance's listings may predate what another host has written since
    return fs, root.rstrip("/")


def _remote_meta(fs: object, key: str) -> dict[str, object] | None:
    try:
        meta = json.loads(fs.cat_file(f"{key}/meta.json"))  # type: ignore[attr-defined]
    except (OSError, ValueError):  # FileNotFoundError included
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == STORE_FORMAT else None


def fetch_remote_store(remote: str, key: str, final: Path, need_train: bool) -> bool:
    """Copy the store `key` of the remote feature cache `remote` (any fsspec URL) into `final`; False when
    the remote has no complete store for it. ``meta.json`` is fetched last, so a copy that dies
    half-way is never taken for a complete one."""
    fs, root = _remote_fs(remote)
    meta = _remote_meta(fs, f"{root}/{key}")
    if meta is None or not (bool(meta.get("train_features")) or not need_train):
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", dir=final.parent))
    try:
        for path in fs.ls(f"{root}/{key}", detail=False):  # type: ignore[attr-defined]
            name = str(path).rstrip("/").rsplit("/", 1)[-1]
            if name != "meta.json" and not name.startswith("."):
                fs.get_file(path, str(tmp / name))  # type: ignore[attr-defined]
        fs.get_file(f"{root}/{key}/meta.json", str(tmp / "meta.json"))  # type: ignore[attr-defined]
        if final.exists():
            shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    except FileNotFoundError:  # evicted from the remote while we copied it: extract instead
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not has_store(final, need_train):
            raise
    return True


def push_remote_store(remote: str, key: str, local: Path) -> None:
    """Upload the complete local store `local` as `key` of the remote feature cache, ``meta.json`` last."""
    fs, root = _remote_fs(remote)
    dest = f"{root}/{key}"
    fs.makedirs(dest, exist_ok=True)  # type: ignore[attr-defined]
    for f in sorted(local.iterdir()):
        if f.is_file() and f.name != "meta.json" and not f.name.startswith("."):
            fs.put_file(str(f), f"{dest}/{f.name}")  # type: ignore[attr-defined]
    fs.put_file(str(local / "meta.json"), f"{dest}/meta.json")  # type: ignore[attr-defined]


def cached_features(
    cache_dir: Path | None, work_dir: Path, key: str, need_train: bool, run: Callable[[Path], Features],
    remote: str | None = None,
) -> tuple[Features, bool]:
    """The store for `key` from `cache_dir`, or `run(fresh_dir)` to make one; returns (features, hit).

    A new store is written into a private directory and renamed into place when complete, so
    concurrent workers never see half a store. Without a cache it lives under `work_dir` and its
    files are unlinked at once: the memory maps keep them readable until the features are dropped,
    and the disk space is freed then, even if the process dies.

    With `remote` (an fsspec URL shared by several machines: the service's store), the local cache is
    a copy of it: a local miss is looked up there (a hit when found), and a fresh store is uploaded."""
    final = cache_dir / key if cache_dir is not None else None
    if final is not None and has_store(final, need_train):
        with contextlib.suppress(OSError):
            os.utime(final / "meta.json")  # last used: the cache's size cap evicts the least recent first
        return Features.load(final), True
    if final is not None and remote and fetch_remote_store(remote, key, final, need_train):
        return Features.load(final), True
    parent = cache_dir if cache_dir is not None else work_dir
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", dir=parent))
    try:
        features = run(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final is None:
        shutil.rmtree(tmp, ignore_errors=True)
        return features, False
    if final.exists():  # another process finished first, or an older store without train features
        shutil.rmtree(final, ignore_errors=True)
    try:
        os.rename(tmp, final)
    except OSError:  # lost a race to another writer: theirs is as good as ours
        shutil.rmtree(tmp, ignore_errors=True)
    if remote and has_store(final, need_train):
        push_remote_store(remote, key, final)
    return features, False


class DeviceForward:
    """The model as extraction runs it: channels-last everywhere, bf16 autocast on CUDA and fp32 on
    the CPU, inference mode; returns float32 features on the device. `bench/extract.py` times this
    same object on preloaded tensors as the pure-forward baseline.

    Channels-last on the CPU too: oneDNN's convolutions prefer it (timm's Lite0 at 224 px, 16 images,
    2 Xeon threads: 0.65 against 1.27 CPU-seconds contiguous; ResNet-50 is unchanged), and whatever
    layout a batch arrives in (the batched transform's, a DataLoader's), the model sees the same one."""

    def __init__(self, extractor: FeatureExtractor, device: str | torch.device, pad_to: int | None = None) -> None:
        self.extractor, self.device, self.pad_to = extractor, torch.device(device), pad_to
        self.cuda = self.device.type == "cuda"
        extractor.model.to(self.device).eval()
        extractor.model.to(memory_format=torch.channels_last)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Features of ``images``. With ``pad_to`` (extraction sets it to the batch size on CUDA), a shorter
        batch is padded with zeros to that many rows and the padding's features dropped: every batch has one
        shape, so cuDNN builds its convolution plans once. Each split's last, partial batch had a shape of
        its own: on an H200 a 10,000-image job's extraction spent 12.4 of its 13.8 s in ``conv2d``
        (docs/benchmarks.md; the forward itself runs 17,000 images a second). In evaluation mode every row
        is computed independently of the others, so the real rows' features do not depend on the padding
        (tested)."""
        n = int(images.shape[0])
        if self.pad_to is not None and n < self.pad_to:
            images = torch.cat([images, images.new_zeros((self.pad_to - n, *images.shape[1:]))])
        if images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.cuda, dtype=torch.bfloat16):
            return self.extractor(images)[:n].float()


class _TransformedSplit(torch.utils.data.Dataset):
    def __init__(self, split: ImageSplit, transform: Callable[[Image.Image], torch.Tensor | np.ndarray]) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> torch.Tensor:
        out = self.transform(self.split.load(i))
        return torch.from_numpy(out) if isinstance(out, np.ndarray) else out


def image_batches(
    split: ImageSplit, transform: Callable[[Image.Image], torch.Tensor], device: torch.device, batch_size: int,
    num_workers: int,
) -> Iterator[torch.Tensor]:
    """Model-ready float32 (B, 3, h, w) batches on `device`, in the split's order."""
    batched = BatchTransform.from_timm(transform) if split.pixels is not None else None
    cuda = device.type == "cuda"
    if batched is not None and split.pixels is not None:
        for start in range(0, len(split), batch_size):
            raw = torch.from_numpy(np.ascontiguousarray(split.pixels.take(np.arange(start, min(start + batch_size,
                                                                                                len(split))))))
            if cuda:
                raw = raw.pin_memory()
            yield batched(raw.to(device, non_blocking=True))
        return
    halves = split_at_tensor(transform)
    per_image: Callable[[Image.Image], torch.Tensor | np.ndarray] = transform if halves is None else halves[0]
    loader = torch.utils.data.DataLoader(
        _TransformedSplit(split, per_image), batch_size=batch_size, shuffle=False, num_workers=num_workers,
        pin_memory=cuda, persistent_workers=False,
    )
    for images in loader:  # model-ready floats, or uint8 pixels normalised on the device
        images = images.to(device, non_blocking=True)
        yield images if halves is None else halves[1](images)


class _HostSink:
    """Copies feature batches to the host and appends them to a writer, without stalling the device:
    on CUDA each copy goes to pinned memory asynchronously and is written two batches later."""

    def __init__(self, writer: FeatureWriter, cuda: bool) -> None:
        self.writer, self.cuda = writer, cuda
        self._pending: list[tuple[torch.Tensor, torch.cuda.Event]] = []

    def push(self, feats: torch.Tensor) -> None:
        if not self.cuda:
            self.writer.append(feats.numpy())
            return
        host = torch.empty(feats.shape, dtype=feats.dtype, pin_memory=True)
        host.copy_(feats, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._pending.append((host, event))
        if len(self._pending) > 2:
            self._drain(1)

    def _drain(self, keep: int) -> None:
        while len(self._pending) > keep:
            host, event = self._pending.pop(0)
            event.synchronize()
            self.writer.append(host.numpy())

    def close(self) -> None:
        self._drain(0)
        self.writer.close()


def extract(
    extractor: FeatureExtractor | FeatureSource,
    transform: Callable[[Image.Image], torch.Tensor],
    train: ImageSplit,
    val: ImageSplit,
    test: ImageSplit,
    num_classes: int,
    store: Path,
    *,
    device: str = "cpu",
    batch_size: int = 64,
    num_workers: int | None = None,
    feature_dtype: FeatureDtype = "float16",
    keep_train: bool = False,
    progress: ImagesProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Features:
    """Extract all three splits into the feature store at `store` and return it opened (memory-mapped).

    `progress(done, total)` is called after every batch with the images done over all splits. The
    same as one shard over every row: `extract_rows(0, total)`."""
    splits = (train, val, test)
    stats = extract_rows(extractor, transform, splits, num_classes, store, (0, sum(map(len, splits))),
                         device=device, batch_size=batch_size, num_workers=num_workers, feature_dtype=feature_dtype,
                         keep_train=keep_train, progress=progress, should_stop=should_stop)
    _finish_store(store, stats, train.labels, val.labels, test.labels, extractor.pooling, feature_dtype, keep_train)
    return Features.load(store)


def split_ranges(sizes: Sequence[int], rows: tuple[int, int]) -> list[tuple[int, int]]:
    """The part of each split inside the global row range `rows`, where the splits' rows follow one
    another (train, then val, then test): a `(start, stop)` within each split, empty as `(0, 0)`."""
    lo, hi = rows
    out, offset = [], 0
    for size in sizes:
        a, b = max(lo - offset, 0), min(hi - offset, size)
        out.append((a, b) if a < b else (0, 0))
        offset += size
    return out


def shard_rows(total: int, shard_size: int) -> list[tuple[int, int]]:
    """`[start, stop)` row ranges of at most `shard_size` rows covering `0 .. total`."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    return [(a, min(a + shard_size, total)) for a in range(0, total, shard_size)]


def extract_rows(
    extractor: FeatureExtractor | FeatureSource,
    transform: Callable[[Image.Image], torch.Tensor],
    splits: tuple[ImageSplit, ImageSplit, ImageSplit],
    num_classes: int,
    store: Path,
    rows: tuple[int, int],
    *,
    device: str = "cpu",
    batch_size: int = 64,
    num_workers: int | None = None,
    feature_dtype: FeatureDtype = "float16",
    keep_train: bool = False,
    progress: ImagesProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> GramStats:
    """One shard: the rows `[start, stop)` of train, val and test laid end to end.

    Writes each split's slice of features that a probe needs (`x_val.npy`, `x_test.npy`, and
    `x_train.npy` with `keep_train`) into `store` and returns the statistics of its train rows
    (zero rows gives zero sums). `progress(done, total)` counts this shard's rows."""
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1) if cuda else 0
    feature_batches: Callable[[ImageSplit], Iterator[torch.Tensor]]
    if isinstance(extractor, FeatureSource):  # issue 19: precomputed vectors or a Hugging Face encoder
        source = extractor
        feature_batches = lambda split: source.batches(split, dev, batch_size)  # noqa: E731
    else:
        forward = DeviceForward(extractor, dev, pad_to=batch_size if cuda else None)
        feature_batches = lambda split: map(  # noqa: E731
            forward, image_batches(split, transform, dev, batch_size, num_workers))
    parts = split_ranges([len(s) for s in splits], rows)
    total = sum(b - a for a, b in parts)
    done = 0
    acc: GramAccumulator | None = None
    store.mkdir(parents=True, exist_ok=True)
    sinks: list[_HostSink] = []
    try:
        for name, whole, (a, b) in zip(SPLITS, splits, parts, strict=True):
            if a == b:
                continue
            split = whole if (a, b) == (0, len(whole)) else whole.subset(np.arange(a, b))
            sink = None
            if name != "train" or keep_train:
                sink = _HostSink(FeatureWriter(store / f"x_{name}.npy", len(split), feature_dtype), cuda)
                sinks.append(sink)
            labels = torch.as_tensor(split.labels, dtype=torch.long)
            start = 0
            for feats in feature_batches(split):
                if should_stop is not None and should_stop():
                    raise Cancelled("cancelled during extraction")
                stop = start + int(feats.shape[0])
                if acc is None:
                    acc = GramAccumulator(int(feats.shape[1]), num_classes, device=dev)
                if name == "train":
                    acc.update(feats, labels[start:stop].to(dev, non_blocking=True))
                if sink is not None:
                    sink.push(feats)
                start = stop
                done += int(feats.shape[0])
                if progress is not None:
                    progress(done, total)
            if sink is not None:
                sink.close()
    except BaseException:
        for s in sinks:
            s.writer.abort()
        raise
    if acc is None:
        raise ValueError(f"the row range {rows} holds no rows")
    return acc.result()


def assemble_shards(
    shards: Sequence[Path], store: Path, labels: tuple[np.ndarray, np.ndarray, np.ndarray], pooling: str,
    feature_dtype: FeatureDtype, keep_train: bool,
) -> Features:
    """The feature store of the whole dataset from shard stores written by `extract_rows` (each with
    `stats.npz` beside its slices), in row order: statistics summed (`sum_stats`), slices
    concatenated one shard at a time into streamed files, so no split is ever held in memory."""
    stats = sum_stats([load_stats(p / "stats.npz") for p in shards])
    store.mkdir(parents=True, exist_ok=True)
    for name, y in zip(SPLITS, labels, strict=True):
        if name == "train" and not keep_train:
            continue
        writer = FeatureWriter(store / f"x_{name}.npy", len(y), feature_dtype)
        for p in shards:
            if (p / f"x_{name}.npy").is_file():
                part = open_array(p / f"x_{name}.npy")
                for a in range(0, len(part), _COPY_ROWS):
                    writer.append(part[a:a + _COPY_ROWS])
        writer.close()
    _finish_store(store, stats, *labels, pooling, feature_dtype, keep_train)
    return Features.load(store)
