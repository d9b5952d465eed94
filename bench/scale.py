"""Time and peak memory as the data grow: accumulation, the probe grid and CKA, on synthetic features.

    nice python bench/scale.py                      # n = 10k, 200k, 1M at d = 2,048; d = 512 … 4,096 at n = 200k
    python bench/scale.py --n 10000,200000 --d-sweep 512,1024 --n-for-d 50000
    python bench/scale.py --quick                   # seconds: a smoke run

Each (n, d) point runs in a fresh process, phase after phase; the peak resident set (VmHWM) is reset
before each phase (`/proc/self/clear_refs`), so each phase's peak is its own (the process's baseline,
Python + torch + numpy, included). The phases are the product's own components:

1. **accumulate**: n train rows arrive in batches of 256 float32 rows (as from the model) into
   `GramAccumulator` (float64 `XᵀX`, `Σx`, class sums); the validation and test rows stream through
   `FeatureWriter` into a float16 feature store on disk (what extraction does). The train rows cycle
   through a pool of 16,384 synthetic rows, so making them costs nothing and the time is the
   accumulator's. The baseline a user would otherwise write, `np.concatenate` of all rows then
   `X.T @ X`, needs n × d × 8 bytes: 16 GiB at n = 1M, d = 2,048.
2. **probe grid**: `RidgeProber` on the standardised statistics and the memory-mapped val/test
   features, every subset of the paper's grid (14 fractions × `--seeds`, 5 by default: 66 probes).
3. **CKA**: `GramCKA` (train Gram) and `FeatureCKA` (memory-mapped test features) for every subset
   of the grid, as `run_probes` does.

Validation and test sizes stay fixed (`--val`, `--test`) as n grows: the statistics grow with n, a
probe does not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POOL = 16_384
BATCH = 256
CLASSES = 10


def _hwm_mib() -> float:
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def _rss_mib() -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def _reset_hwm() -> None:
    with contextlib.suppress(OSError):  # else each phase reports the process's peak so far
        Path("/proc/self/clear_refs").write_text("5")


def _synthetic(rows: int, d: int, seed: int):
    """Class signal in 32 latent dimensions mixed densely into d neurons, noise, ReLU: float32."""
    import numpy as np

    shared = np.random.default_rng(d)  # the same class structure for train and eval rows
    mix = shared.normal(size=(32, d)).astype(np.float32)
    means = shared.normal(size=(CLASSES, 32)).astype(np.float32) * 2
    rng = np.random.default_rng([seed, d])
    y = rng.integers(0, CLASSES, size=rows)
    x = (means[y] + rng.normal(size=(rows, 32)).astype(np.float32)) @ mix
    x += rng.normal(size=(rows, d)).astype(np.float32) * 3
    return np.maximum(x, 0, out=x), y


def point(n: int, d: int, n_val: int, n_test: int, seeds: int, work: Path) -> dict[str, object]:
    """One (n, d) point: the three phases, each timed with its own peak RSS."""
    import torch

    from redundancy.config import PAPER_FRACTIONS
    from redundancy.probing import RidgeProber, plan_subsets, sample_subset
    from redundancy.probing.cka import FeatureCKA, GramCKA
    from redundancy.sources.features_store import FeatureWriter, open_array
    from redundancy.sources.stats import GramAccumulator

    out: dict[str, object] = {"n": n, "d": d, "val": n_val, "test": n_test, "imports_mib": _rss_mib()}
    pool_x, pool_y = _synthetic(POOL, d, 0)
    eval_x, eval_y = _synthetic(n_val + n_test, d, 1)
    store = Path(tempfile.mkdtemp(prefix="scale-", dir=work))

    _reset_hwm()
    t0 = time.perf_counter()
    acc = GramAccumulator(d, CLASSES)
    done = 0
    while done < n:
        i = done % POOL
        b = min(BATCH, n - done, POOL - i)
        acc.update(torch.from_numpy(pool_x[i : i + b]), torch.from_numpy(pool_y[i : i + b]))
        done += b
    for name, lo, hi in (("val", 0, n_val), ("test", n_val, n_val + n_test)):
        w = FeatureWriter(store / f"x_{name}.npy", hi - lo, "float16")
        for j in range(lo, hi, BATCH):
            w.append(eval_x[j : min(j + BATCH, hi)])
        w.close()
    stats = acc.result()
    out["accumulate"] = {"s": time.perf_counter() - t0, "peak_mib": _hwm_mib()}
    del pool_x
    assert stats.n == n

    x_val, x_test = open_array(store / "x_val.npy"), open_array(store / "x_test.npy")
    y_val, y_test = eval_y[:n_val], eval_y[n_val:]
    plan = plan_subsets(list(PAPER_FRACTIONS), d, seeds)
    subsets = [(k, s, sample_subset(d, k, s)) for _, k, seeds in plan.entries for s in range(seeds)]
    del eval_x

    _reset_hwm()
    t0 = time.perf_counter()
    prober = RidgeProber(stats.standardised(), x_val, y_val, x_test, y_test)
    accs = [prober.probe(s).accuracy for _, _, s in subsets]
    out["probe_grid"] = {"s": time.perf_counter() - t0, "peak_mib": _hwm_mib(), "probes": len(subsets),
                         "full_accuracy": accs[-1]}
    del prober

    _reset_hwm()
    t0 = time.perf_counter()
    gram_cka, test_cka = GramCKA(stats.centred_gram()), FeatureCKA(x_test)
    for k, seed, s in subsets:
        gram_cka(s)
        test_cka.subset_subset(k, seed)
    out["cka"] = {"s": time.perf_counter() - t0, "peak_mib": _hwm_mib()}
    del x_val, x_test, test_cka
    shutil.rmtree(store, ignore_errors=True)
    return out


def _run_point(n: int, d: int, args: argparse.Namespace) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--point", f"{n},{d}", "--val", str(args.val), "--test", str(args.test),
           "--seeds", str(args.seeds), "--work", str(args.work)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"point n={n} d={d} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _row(r: dict) -> str:
    a, p, c = r["accumulate"], r["probe_grid"], r["cka"]
    per_m = a["s"] / r["n"] * 1e6
    return (f"| {r['n']:>9,} | {r['d']:>5,} | {a['s']:8.1f} | {per_m:8.1f} | {a['peak_mib']:7,.0f} | "
            f"{p['s']:7.1f} | {p['s'] / p['probes']:6.3f} | {p['peak_mib']:7,.0f} | {c['s']:6.1f} | "
            f"{c['peak_mib']:7,.0f} |")


HEADER = ("| n | d | accumulate s | s per 1M rows | peak MiB | grid s | s per probe | peak MiB | CKA s | peak MiB |\n"
          "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="10000,200000,1000000", help="train rows for the n sweep (at --d)")
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--d-sweep", default="512,1024,2048,4096", help="widths for the d sweep (at --n-for-d)")
    ap.add_argument("--n-for-d", type=int, default=200_000)
    ap.add_argument("--val", type=int, default=10_000)
    ap.add_argument("--test", type=int, default=10_000)
    ap.add_argument("--seeds", type=int, default=5, help="subsets per fraction of the paper's grid (5: 66 probes)")
    ap.add_argument("--work", type=Path, default=None, help="where the feature stores go (default: a temp dir)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--point", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.work is None:
        args.work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    args.work.mkdir(parents=True, exist_ok=True)
    if args.point:
        n, d = (int(v) for v in args.point.split(","))
        print(json.dumps(point(n, d, args.val, args.test, args.seeds, args.work)))
        return
    if args.quick:
        args.n, args.d, args.d_sweep, args.n_for_d, args.val, args.test = "2000,8000", 64, "32,128", 4000, 300, 300
    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    print(f"# {cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads); "
          f"val {args.val:,} + test {args.test:,} rows, float16 store, paper grid with {args.seeds} seed(s)")
    points = [(int(n), args.d) for n in args.n.split(",") if n]
    points += [(args.n_for_d, int(d)) for d in args.d_sweep.split(",") if d and (args.n_for_d, int(d)) not in points]
    print(HEADER)
    print("(peak MiB: the process's peak resident set in that phase, Python + torch included: see 'imports')")
    results = []
    for n, d in points:
        r = _run_point(n, d, args)
        results.append(r)
        print(_row(r), flush=True)
    imports = min(r["imports_mib"] for r in results)
    print(f"imports alone (Python, torch, numpy, the engine): {imports:,.0f} MiB resident")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "points": results}, indent=2))


if __name__ == "__main__":
    main()
