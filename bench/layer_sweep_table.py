"""The per-layer table of docs/validation.md (issue 21): one `layers: "sweep"` job of the bundled
EfficientNet-Lite0 over a class-balanced CIFAR-10 subset, every stage plus pre_logits.

    HF_HUB_OFFLINE=1 python bench/layer_sweep_table.py --max-train 1000 --max-test 500 --image-size 224

Prints a markdown table: per layer its width, full-layer test accuracy, the training-side (GCV) score the
reference layer is chosen by, its own f* (k) at δ 0.01 / 0.05 / 0.1, the traced multiply-adds up to it and the
measured latency relative to the whole network; then the answer across layers at each δ.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from redundancy import AnalysisConfig, Runtime
from redundancy.pipeline import run_analysis


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / ".." / "shared" / "data"
                    / "cifar10.npz")
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--max-test", type=int, default=500)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    config = AnalysisConfig.model_validate({
        "model": {"name": "tf_efficientnet_lite0", "weights": "bundled"}, "layers": "sweep",
        "dataset": {"spec": f"npz:{args.data}", "max_train": args.max_train, "max_test": args.max_test},
        "image_size": args.image_size, "seeds": args.seeds, "bootstrap": 0, "baselines": [],
        "fractions": [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0], "deltas": [0.01, 0.05, 0.1],
    })
    t = time.time()
    report = run_analysis(config, Runtime(cache_dir=None, device="cpu")).report
    sizes = report.dataset.sizes
    print(f"CIFAR-10 {sizes['train']}/{sizes['val']}/{sizes['test']} (train/val/test) at {args.image_size} px, "
          f"{args.seeds} seeds, {time.time() - t:.0f} s\n")
    print("| layer | index | d | full acc | GCV (full) | k at δ 0.01 | k at δ 0.05 | k at δ 0.1 | MACs up to it | "
          "latency / whole |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for x in report.layers:
        ks = " | ".join(f"{a.k} ({a.fraction:g})" for a in x.answers)
        ref = " (reference)" if x.reference else ""
        print(f"| {x.layer}{ref} | {x.index if x.index is not None else '–'} | {x.d} | {x.full_accuracy:.4f} | "
              f"{x.selection_score:.4f} | {ks} | {x.macs / 1e6:.0f} M ({x.macs_fraction:.0%}) | "
              f"{x.latency_fraction:.2f} |")
    print()
    for r in report.recommendations:
        print(f"- δ {r.delta:g}: layer {r.layer}, k = {r.k} of {r.d} (score {r.score:.4f} ≥ {r.threshold:.4f})")


if __name__ == "__main__":
    main()
