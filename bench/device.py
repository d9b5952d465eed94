"""Extraction throughput and the probe grid on the accelerator, each as a ratio against its baseline.

    python bench/device.py                 # CUDA if present, else CPU (a smoke run)
    python bench/device.py --models ""     # the probe grid only (what bench/gpu.sh runs)

1. Extraction: images/s of the engine's extractor (channels-last, bf16 autocast, inference mode)
   against plain fp32 eager inference of the same timm model on the same device, same batches.
2. Probe grid: the paper's grid (14 fractions × 5 seeds) of Gram-space ridge probes on the device
   against the same grid on the CPU, on the same synthetic features.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import timm
import torch

from redundancy.config import PAPER_FRACTIONS
from redundancy.probing import RidgeProber, plan_subsets, sample_subset
from redundancy.sources.models.layers import FeatureExtractor
from redundancy.sources.stats import GramAccumulator


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def extraction(model_name: str, device: torch.device, batch: int, batches: int, size: int) -> dict[str, float]:
    model = timm.create_model(model_name, pretrained=False).eval().to(device)
    images = torch.randn(batch, 3, size, size, device=device)
    extractor = FeatureExtractor(model)
    amp = device.type == "cuda"

    def ours() -> None:
        x = images.to(memory_format=torch.channels_last) if amp else images
        with torch.inference_mode(), torch.autocast(device.type, enabled=amp, dtype=torch.bfloat16):
            extractor(x).float()

    def plain() -> None:
        with torch.no_grad():
            model.forward_head(model.forward_features(images), pre_logits=True)

    rates = {}
    if amp:
        model.to(memory_format=torch.channels_last)
    for name, fn in (("ours", ours), ("fp32_eager", plain)):
        if name == "fp32_eager":
            model.to(memory_format=torch.contiguous_format)
        fn()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(batches):
            fn()
        _sync(device)
        rates[name] = batch * batches / (time.perf_counter() - t0)
        if amp:
            model.to(memory_format=torch.channels_last)
    return {"images_per_s_ours": rates["ours"], "images_per_s_fp32": rates["fp32_eager"],
            "ratio": rates["ours"] / rates["fp32_eager"]}


def probe_grid(device: torch.device, n: int, d: int, classes: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, size=n + 4000)
    x = (rng.normal(size=(classes, 32))[y] @ rng.normal(size=(32, d)) + rng.normal(size=(n + 4000, d)) * 3)
    x = np.maximum(x, 0).astype(np.float32)
    acc = GramAccumulator(d, classes, device=device)
    acc.update(torch.as_tensor(x[:n], device=device), torch.as_tensor(y[:n], device=device))
    problem = acc.result().standardised()
    plan = plan_subsets(list(PAPER_FRACTIONS), d, 5)
    subsets = [sample_subset(d, k, s) for _, k, seeds in plan.entries for s in range(seeds)]
    out = {}
    for name, dev in (("device", device), ("cpu", torch.device("cpu"))):
        prober = RidgeProber(problem, x[n : n + 2000], y[n : n + 2000], x[n + 2000 :], y[n + 2000 :], device=dev)
        prober.probe(subsets[0])
        _sync(dev)
        t0 = time.perf_counter()
        accs = [prober.probe(s).accuracy for s in subsets]
        _sync(dev)
        out[f"grid_s_{name}"] = time.perf_counter() - t0
        out[f"mean_accuracy_{name}"] = float(np.mean(accs))
    out["ratio"] = out["grid_s_cpu"] / out["grid_s_device"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tf_efficientnet_lite0,resnet50")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke run)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.quick:
        args.batch, args.batches, args.image_size, args.n, args.d = 8, 2, 64, 2000, 256
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    results: dict[str, object] = {"device": name, "torch": torch.__version__, "n": args.n, "d": args.d}
    for model in filter(None, args.models.split(",")):  # --models "": the probe grid only
        r = extraction(model, device, args.batch, args.batches, args.image_size)
        results[f"extract_{model}"] = r
        print(f"extract {model:24s} ours {r['images_per_s_ours']:9.1f} img/s   fp32 eager "
              f"{r['images_per_s_fp32']:9.1f} img/s   ratio {r['ratio']:.2f}×")
    g = probe_grid(device, args.n, args.d, 10)
    results["probe_grid"] = g
    print(f"probe grid (66 probes, n={args.n}, d={args.d}) on {name}: {g['grid_s_device']:.2f} s, on CPU "
          f"{g['grid_s_cpu']:.2f} s, ratio {g['ratio']:.1f}×, mean accuracy {g['mean_accuracy_device']:.4f} vs "
          f"{g['mean_accuracy_cpu']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
