"""The paper's probe grid, timed: our Gram-space ridge grid against one probe per subset.

    python bench/probe_grid.py                      # n = 50,000, d = 2,048, 14 fractions × 5 seeds
    python bench/probe_grid.py --lr-C val           # LR with one C chosen on the validation split
    python bench/probe_grid.py --quick              # a smoke run in seconds
    python bench/probe_grid.py --full --json out.json

*Ours* is exactly what the product does after extraction (`redundancy.pipeline.run_probes`): one
streaming accumulation `GramStats.from_features` over the fit rows (as extraction does), then, as
`pipeline.training_problem` does, the validation rows' statistics merged in and the standardised
problem of all training rows (`standardised_problem`: from the statistics, without a second pass,
when their rounding allows), a `RidgeProber` choosing λ by GCV once per fraction (`probe_group` over
the fraction's seeds of `plan_subsets(PAPER_FRACTIONS, d, seeds)`).

The headline is **GRID / ACCUMULATION**: everything after the accumulation pass (standardisation,
prober set-up, 66 probes), as a multiple of that pass measured in the same run. The accumulation is
the floor every method pays: any probe needs the features summed at least once.
`--lambda-select val` times the product before GCV: λ on the 10 % validation split, one `probe`
per subset.
All of it is in our total. The part-versus-whole CKA (`GramCKA`) is timed separately.

*Baselines* are what a user would otherwise write, one model per subset, trained on the same fit
rows, standardised per subset (`StandardScaler` / mean-std, inside the timing):

- scikit-learn `LogisticRegression` (lbfgs, multinomial, `--lr-C`, `--lr-max-iter`); it does not
  use the validation split unless `--lr-C val` picks one C for the whole grid with it;
- the paper's own protocol: a torch linear (logistic) probe trained by SGD for `--sgd-epochs`
  epochs (default 50, the paper's number; batch 256, lr 0.1, momentum 0.9, weight decay 5e-4,
  cross-entropy), last-epoch weights.

Fitting every baseline on all 66 subsets at n = 50,000 is slow on a small machine, so by default
one subset per distinct k (seed 0) is measured and the grid total is *extrapolated*: each
unmeasured subset is charged the mean measured time of the subsets with the same k (or, if no
subset of that k was measured, the nearest measured k's time scaled linearly in k). `--full`
measures every subset. Accuracy agreement is reported on the measured subsets only, each against
our probe on the very same neurons.

Times are wall clock and this process's CPU time. Every method gets the same `--threads` (default
1): on a small machine shared with other work, multi-threaded OpenMP/BLAS regions stall whenever a
peer thread is descheduled (we saw a 2-thread SGD epoch go from 0.3 s to 18 s under load), which
would make any ratio an accident of the load; one thread per method keeps the comparison fair, and
the CPU time keeps it readable when the wall clock is inflated by other processes.

Features are synthetic and seeded (see `synthetic_features`) unless `--npz` gives real ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from redundancy.config import DEFAULT_DELTAS, PAPER_FRACTIONS
from redundancy.probing import RidgeProber, plan_subsets, sample_subset
from redundancy.probing.cka import GramCKA
from redundancy.probing.lbfgs import C_GRID, standardise, train_logistic_lbfgs
from redundancy.probing.lbfgs import objective as lbfgs_objective
from redundancy.sources.datasets.base import validation_split
from redundancy.sources.stats import GramStats, standardised_from_rows, standardised_problem

VAL_FRACTION = 0.1  # the product's default `AnalysisConfig.val_fraction`


# Data ---------------------------------------------------------------------------------------------


@dataclass
class Data:
    x_fit: np.ndarray  # float32 (n_fit, d): the rows the probes are trained on
    y_fit: np.ndarray
    x_val: np.ndarray  # the held-out 10 % that chooses λ (ours only)
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str


def synthetic_features(
    n: int, d: int, n_test: int, num_classes: int, seed: int = 0, signal_dim: int = 32,
    nuisance_dim: int = 96, separation: float = 0.5, noise: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Post-ReLU-like features with a diffused class signal.

    A `signal_dim`-dimensional latent (class mean + unit Gaussian noise) and a `nuisance_dim`-
    dimensional class-independent latent are mixed into `d` neurons by random dense maps, plus
    independent per-neuron noise and a bias, then rectified (≈ 40 % zeros). The class information
    is spread thinly over every neuron, so accuracy rises smoothly with the number of neurons kept:
    on the default sizes (10 classes) about 12 % at 1 neuron, 49 % at 5 % of the layer and 83–85 %
    for the full layer.
    """
    rng = np.random.default_rng([seed, 0])
    means = rng.standard_normal((num_classes, signal_dim)) * separation
    a_sig = (rng.standard_normal((signal_dim, d)) / np.sqrt(signal_dim)).astype(np.float32)
    a_nui = (rng.standard_normal((nuisance_dim, d)) * 1.5 / np.sqrt(nuisance_dim)).astype(np.float32)
    bias = (0.5 + 0.3 * rng.standard_normal(d)).astype(np.float32)

    def draw(m: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
        r = np.random.default_rng([seed, stream])
        y = r.integers(0, num_classes, m)
        x = np.empty((m, d), dtype=np.float32)
        for lo in range(0, m, 8192):  # chunked to bound the temporaries
            hi = min(m, lo + 8192)
            sig = (means[y[lo:hi]] + r.standard_normal((hi - lo, signal_dim))).astype(np.float32)
            nui = r.standard_normal((hi - lo, nuisance_dim), dtype=np.float32)
            chunk = sig @ a_sig + nui @ a_nui + bias
            chunk += noise * r.standard_normal((hi - lo, d), dtype=np.float32)
            np.maximum(chunk, 0.0, out=chunk)
            x[lo:hi] = chunk
        return x, y.astype(np.int64)

    x_train, y_train = draw(n, 1)
    x_test, y_test = draw(n_test, 2)
    return x_train, y_train, x_test, y_test


def split_train(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int, source: str
) -> Data:
    """Hold out the validation split exactly as the product does (`validation_split`, 10 %)."""
    fit_idx, val_idx = validation_split(y_train, VAL_FRACTION, seed)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    return Data(
        x_fit=np.ascontiguousarray(x_train[fit_idx]), y_fit=y_train[fit_idx],
        x_val=np.ascontiguousarray(x_train[val_idx]), y_val=y_train[val_idx],
        x_test=x_test, y_test=y_test, num_classes=num_classes, source=source,
    )


def load_npz(path: Path, seed: int) -> Data:
    """Real features: `x_train, y_train, x_test, y_test` (the validation split is then held out of
    train), or the product's feature cache, which also has `x_val, y_val` (x_train = the fit rows)."""
    with np.load(path, allow_pickle=False) as a:
        arrays = {k: a[k] for k in a.files if k in {"x_train", "y_train", "x_val", "y_val", "x_test", "y_test"}}
    missing = {"x_train", "y_train", "x_test", "y_test"} - set(arrays)
    if missing:
        raise SystemExit(f"{path}: missing array(s) {sorted(missing)}")
    x_tr = np.asarray(arrays["x_train"], dtype=np.float32)
    y_tr = np.asarray(arrays["y_train"], dtype=np.int64)
    x_te = np.asarray(arrays["x_test"], dtype=np.float32)
    y_te = np.asarray(arrays["y_test"], dtype=np.int64)
    if "x_val" in arrays:
        y_val = np.asarray(arrays["y_val"], dtype=np.int64)
        num_classes = int(max(y_tr.max(), y_te.max(), y_val.max())) + 1
        return Data(
            x_fit=x_tr, y_fit=y_tr, x_val=np.asarray(arrays["x_val"], dtype=np.float32), y_val=y_val,
            x_test=x_te, y_test=y_te, num_classes=num_classes, source=f"npz:{path} (feature cache)",
        )
    return split_train(x_tr, y_tr, x_te, y_te, seed, f"npz:{path}")


# The grid -----------------------------------------------------------------------------------------


@dataclass
class Subset:
    fraction: float
    k: int
    seed: int
    index: np.ndarray = field(repr=False)


def grid(d: int, seeds: int, master_seed: int) -> tuple[list[Subset], list[tuple[float, int, str]]]:
    plan = plan_subsets(list(PAPER_FRACTIONS), d, seeds)
    subsets = [
        Subset(f, k, s, sample_subset(d, k, s, master_seed)) for f, k, n_seeds in plan.entries for s in range(n_seeds)
    ]
    return subsets, plan.skipped


def choose_measured(subsets: list[Subset], count: int | None) -> list[Subset]:
    """Which subsets the baselines are fitted on. Default (`count` None): seed 0 of every distinct
    k. A count below the number of distinct k spreads over the k (always keeping the largest, which
    dominates the time); a larger count adds further seeds round-robin over the k."""
    by_k: dict[int, list[Subset]] = {}
    for s in subsets:
        by_k.setdefault(s.k, []).append(s)
    ks = sorted(by_k)
    if count is None:
        count = len(ks)
    count = max(1, min(count, len(subsets)))
    if count <= len(ks):
        picks = np.unique(np.round(np.linspace(len(ks) - 1, 0, count)).astype(int))
        return sorted((by_k[ks[i]][0] for i in picks), key=lambda s: (s.k, s.seed))
    chosen: list[Subset] = []
    depth = 0
    while len(chosen) < count:
        for k in ks:
            if depth < len(by_k[k]) and len(chosen) < count:
                chosen.append(by_k[k][depth])
        depth += 1
    return sorted(chosen, key=lambda s: (s.k, s.seed))


# Timing -------------------------------------------------------------------------------------------


class Clock:
    """Wall time and this process's CPU time (all its threads) of a block. On a shared machine
    the wall time moves with everyone else's load; the CPU time mostly does not."""

    def __enter__(self) -> Clock:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c

    def as_dict(self) -> dict[str, float]:
        return {"wall_s": self.wall, "cpu_s": self.cpu}


def _add(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: a[k] + b[k] for k in a}


# Ours ---------------------------------------------------------------------------------------------


def run_ours(
    data: Data, subsets: list[Subset], with_cka: bool, stream_batch: int | None = None, select: str = "gcv",
    device: str = "cpu",
) -> dict:
    """The product's path (`redundancy.pipeline.run_probes`), stage by stage: times and accuracies.
    `select="gcv"` (the default): the standardised problem of all training rows (fit + validation,
    `standardised_from_rows`), λ by GCV once per fraction (`RidgeProber.probe_group` over the
    fraction's seeds). `select="val"`: the fit rows' statistics and λ on the validation split, one
    `probe` per subset (the product before GCV).
    With `stream_batch`, also time the same accumulation fed `stream_batch` rows per `update` call,
    as extraction feeds it (reported separately, not in the total)."""
    stages: dict[str, dict[str, float]] = {}
    streamed: dict[str, float] | None = None
    if stream_batch:
        with Clock() as c:
            acc = GramStats.empty(data.x_fit.shape[1], data.num_classes)
            for lo in range(0, data.x_fit.shape[0], stream_batch):
                acc.update(data.x_fit[lo : lo + stream_batch], data.y_fit[lo : lo + stream_batch])
        streamed = {**c.as_dict(), "batch": stream_batch}
        del acc
    with Clock() as c:
        stats = GramStats.from_features(_on(data.x_fit, device), _on(data.y_fit, device), data.num_classes)
    stages["accumulate"] = c.as_dict()
    with Clock() as c:
        if select == "gcv":  # as `pipeline.training_problem`: the fit split's pass reused, val rows added
            stats_all = stats.merge(
                GramStats.from_features(_on(data.x_val, device), _on(data.y_val, device), data.num_classes))
            problem = standardised_problem(stats_all, lambda: (np.concatenate([data.x_fit, data.x_val]),
                                                                np.concatenate([data.y_fit, data.y_val])))
        else:
            problem = stats.standardised()
    stages["standardise"] = c.as_dict()
    with Clock() as c:
        prober = RidgeProber(problem, data.x_val, data.y_val, data.x_test, data.y_test, device=device, select=select)
    stages["prober_init"] = c.as_dict()
    per_subset: list[dict] = []
    with Clock() as all_probes:
        for group in _by_k(subsets):
            with Clock() as c:
                results = prober.probe_group([s.index for s in group])
            for s, r in zip(group, results, strict=True):  # the group's time is shared equally
                per_subset.append({"fraction": s.fraction, "k": s.k, "seed": s.seed, "accuracy": r.accuracy,
                                   "lam": r.lam, **{k: v / len(group) for k, v in c.as_dict().items()}})
    stages["probes"] = all_probes.as_dict()
    total = {"wall_s": 0.0, "cpu_s": 0.0}
    for v in stages.values():
        total = _add(total, v)
    after = {k: total[k] - stages["accumulate"][k] for k in total}
    floor = {k: stages["accumulate"][k] / max(after[k] + stages["accumulate"][k], 1e-12) for k in total}
    out: dict = {"stages": stages, "total": total, "per_subset": per_subset, "after_accumulation": after,
                 "grid_over_accumulation": {k: after[k] / stages["accumulate"][k] for k in total},
                 "accumulation_share": floor}
    if streamed is not None:
        out["accumulate_streamed"] = streamed
    if with_cka:
        with Clock() as c:
            cka = GramCKA(stats.centred_gram(), device="cpu")
            values = [cka(s.index) for s in subsets]
        out["cka"] = c.as_dict()
        for rec, v in zip(per_subset, values, strict=True):
            rec["cka"] = v
    return out


def run_reference(data: Data, subsets: list[Subset]) -> dict:
    """The slow, obvious version of the GCV grid, to check the fast one on its *recommendations*: the
    standardised problem from the rows (a second pass, no cancellation), λ by torch's `eigh` and the
    other seeds by torch's Cholesky (`RidgeProber.lapack = False`, the device-agnostic path)."""
    with Clock() as c:
        problem = standardised_from_rows(np.concatenate([data.x_fit, data.x_val]),
                                         np.concatenate([data.y_fit, data.y_val]), data.num_classes)
        prober = RidgeProber(problem, None, None, data.x_test, data.y_test, device="cpu", select="gcv")
        prober.lapack = False
        per_subset = []
        for group in _by_k(subsets):
            for s, r in zip(group, prober.probe_group([s.index for s in group]), strict=True):
                per_subset.append({"k": s.k, "seed": s.seed, "fraction": s.fraction, "accuracy": r.accuracy,
                                   "lam": r.lam, "score": r.score})
    return {"per_subset": per_subset, **c.as_dict()}


def smallest_fractions(per_subset: list[dict], deltas: tuple[float, ...]) -> dict[str, float | None]:
    """f* per δ by the point-estimate rule: the smallest fraction whose mean accuracy over its seeds
    is at least (1 − δ) × the full layer's (the product adds a confidence interval on top)."""
    by_f: dict[float, list[float]] = {}
    for r in per_subset:
        by_f.setdefault(r["fraction"], []).append(r["accuracy"])
    full = float(np.mean(by_f[max(by_f)]))
    return {str(dl): next((f for f in sorted(by_f) if np.mean(by_f[f]) >= (1 - dl) * full), None) for dl in deltas}


def compare_to_reference(ours: list[dict], ref: list[dict]) -> dict:
    key = {(r["k"], r["seed"]): r for r in ref}
    pairs = [(o, key[(o["k"], o["seed"])]) for o in ours]
    return {
        "max_abs_accuracy_diff_points": max(100 * abs(o["accuracy"] - r["accuracy"]) for o, r in pairs),
        "lambda_differs": sum(o["lam"] != r["lam"] for o, r in pairs),
        "f_star_fast": smallest_fractions(ours, DEFAULT_DELTAS),
        "f_star_reference": smallest_fractions(ref, DEFAULT_DELTAS),
    }


def _on(a: np.ndarray, device: str) -> np.ndarray | torch.Tensor:
    """The rows as the accumulation gets them: numpy on the CPU, a device tensor elsewhere (the copy
    to the device is in the timing, as extraction's features are already there it is an upper bound)."""
    return a if device == "cpu" else torch.as_tensor(a, device=device)


def _by_k(subsets: list[Subset]) -> list[list[Subset]]:
    """Consecutive subsets of one size: a fraction's seeds, probed as one group."""
    groups: list[list[Subset]] = []
    for s in subsets:
        if groups and groups[-1][0].k == s.k:
            groups[-1].append(s)
        else:
            groups.append([s])
    return groups


def describe_ours(o: dict) -> str:
    st = o["stages"]
    parts = [f"{name.replace('_', ' ')} {st[name]['wall_s']:.2f} s" for name in st]
    line = ", ".join(parts) + f" → total {o['total']['wall_s']:.2f} s wall, {o['total']['cpu_s']:.2f} s CPU"
    r = o["grid_over_accumulation"]
    line += (f"\n  GRID / ACCUMULATION (everything after the accumulation pass, as a multiple of it): "
             f"{r['cpu_s']:.2f}× CPU, {r['wall_s']:.2f}× wall (target ≤ 2×)")
    if "cka" in o:
        line += f"; CKA (separate, not in the total) {o['cka']['wall_s']:.2f} s"
    if "accumulate_streamed" in o:
        sa = o["accumulate_streamed"]
        line += (f"; the accumulation fed {sa['batch']} rows per update() (separate, not in the total) "
                 f"{sa['wall_s']:.2f} s wall, {sa['cpu_s']:.2f} s CPU")
    return line


# Baselines ----------------------------------------------------------------------------------------

LR_C_GRID: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def fit_logistic(data: Data, s: Subset, c_reg: float, max_iter: int, score_on: str = "test") -> dict:
    """What a user would write: standardise the subset's columns, fit sklearn's LogisticRegression
    (lbfgs; multinomial for more than two classes) on the fit rows, score on test (or val)."""
    x_eval, y_eval = (data.x_test, data.y_test) if score_on == "test" else (data.x_val, data.y_val)
    with Clock() as c:
        scaler = StandardScaler()
        x_fit = scaler.fit_transform(data.x_fit[:, s.index])
        x_ev = scaler.transform(x_eval[:, s.index])
        clf = LogisticRegression(C=c_reg, max_iter=max_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x_fit, data.y_fit)
        acc = float((clf.predict(x_ev) == y_eval).mean())
    n_iter = int(np.max(clf.n_iter_))
    return {"fraction": s.fraction, "k": s.k, "seed": s.seed, "accuracy": acc, "C": c_reg, "n_iter": n_iter,
            "hit_max_iter": n_iter >= max_iter, **c.as_dict()}


def search_lr_c(data: Data, s: Subset, max_iter: int) -> dict:
    """Pick one C for the whole LR grid on the validation split, on subset `s` (the full layer).
    Ascending C; stops once validation accuracy has fallen below the best twice in a row."""
    tried: list[dict] = []
    best: dict | None = None
    worse = 0
    for c_reg in LR_C_GRID:
        r = fit_logistic(data, s, c_reg, max_iter, score_on="val")
        tried.append(r)
        print(f"  C={c_reg:g}: val acc {100 * r['accuracy']:.2f}, {r['n_iter']} iters, {r['wall_s']:.1f} s",
              flush=True)
        if best is None or r["accuracy"] > best["accuracy"]:
            best, worse = r, 0
        else:
            worse += 1
            if worse == 2:
                break
    assert best is not None
    return {"C": best["C"], "on_k": s.k, "tried": tried,
            "wall_s": sum(r["wall_s"] for r in tried), "cpu_s": sum(r["cpu_s"] for r in tried)}


def lbfgs_vs_sklearn(data: Data, s: Subset, seed: int = 0) -> dict:
    """The product's logistic probe (`probe: logistic`, `logistic_solver: lbfgs`) on one subset:
    `train_logistic_lbfgs` (C path on the selection split, warm-started, then the refit on all
    training rows), against scikit-learn's `LogisticRegression` (lbfgs, default tol, max_iter 1000)
    fitted once at the C ours chose on the same standardised rows: times, accuracies, objectives."""
    with Clock() as ours_c:
        (r,) = train_logistic_lbfgs(data.x_fit, data.y_fit, data.x_val, data.y_val, data.x_test, data.y_test,
                                    [s.index], data.num_classes, seed=seed)
    c_reg = 1.0 / r.lam
    x_all = np.concatenate([data.x_fit, data.x_val])[:, s.index].astype(np.float64)
    y_all = np.concatenate([data.y_fit, data.y_val])
    mean, sd = standardise(x_all)
    z, z_test = (x_all - mean) / sd, (data.x_test[:, s.index] - mean) / sd
    with Clock() as sk_c:
        clf = LogisticRegression(C=c_reg, max_iter=1000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(z, y_all)
    assert r.coef is not None and r.intercept is not None
    j_ours = lbfgs_objective(z, y_all, r.coef, r.intercept, c_reg)
    j_sk = lbfgs_objective(z, y_all, clf.coef_.T, clf.intercept_, c_reg)
    return {"k": s.k, "seed": s.seed, "C": c_reg, "ours": ours_c.as_dict(), "sklearn_one_fit": sk_c.as_dict(),
            "accuracy_ours": r.accuracy, "accuracy_sklearn": float((clf.predict(z_test) == data.y_test).mean()),
            "objective_ours": j_ours, "objective_sklearn": j_sk, "sklearn_iters": int(np.max(clf.n_iter_))}


def fit_sgd(data: Data, s: Subset, epochs: int, batch: int = 256, seed: int = 0) -> dict:
    """A torch linear probe: SGD (lr 0.1, momentum 0.9, weight decay 5e-4, batch 256) on the
    standardised subset, cross-entropy, `epochs` epochs, last-epoch weights."""
    with Clock() as c:
        x = torch.from_numpy(np.ascontiguousarray(data.x_fit[:, s.index]))
        mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
        x = (x - mu) / sd
        xt = (torch.from_numpy(np.ascontiguousarray(data.x_test[:, s.index])) - mu) / sd
        y = torch.from_numpy(data.y_fit)
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        model = torch.nn.Linear(s.k, data.num_classes)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        loss_fn = torch.nn.CrossEntropyLoss()
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=gen)
            for lo in range(0, x.shape[0], batch):
                idx = order[lo : lo + batch]
                opt.zero_grad(set_to_none=True)
                loss_fn(model(x[idx]), y[idx]).backward()
                opt.step()
        with torch.no_grad():
            pred = model(xt).argmax(1).numpy()
        acc = float((pred == data.y_test).mean())
    return {"fraction": s.fraction, "k": s.k, "seed": s.seed, "accuracy": acc, **c.as_dict()}


def extrapolate(subsets: list[Subset], measured: list[dict], key: str) -> tuple[float, dict[int, str]]:
    """Grid total of `key` (wall_s or cpu_s): each subset is charged the mean measured time of its
    k; a k with no measurement takes the nearest measured k's (in log k) time scaled linearly in k.
    Returns (seconds, how each k was costed)."""
    per_k: dict[int, list[float]] = {}
    for m in measured:
        per_k.setdefault(m["k"], []).append(m[key])
    mean_k = {k: float(np.mean(v)) for k, v in per_k.items()}
    known = np.array(sorted(mean_k))
    total, how = 0.0, {}
    for s in subsets:
        if s.k in mean_k:
            total += mean_k[s.k]
            how[s.k] = f"measured on {len(per_k[s.k])} subset(s)"
        else:
            near = int(known[np.argmin(np.abs(np.log(known) - np.log(s.k)))])
            total += mean_k[near] * s.k / near
            how[s.k] = f"scaled linearly from k={near}"
    return total, how


def agreement(ours: list[dict], other: list[dict]) -> dict:
    acc = {(r["k"], r["seed"]): r["accuracy"] for r in ours}
    diffs = np.array([100.0 * (acc[(m["k"], m["seed"])] - m["accuracy"]) for m in other])
    return {
        "subsets": int(diffs.size),
        "mean_abs_diff_points": float(np.abs(diffs).mean()),
        "max_abs_diff_points": float(np.abs(diffs).max()),
        "mean_signed_diff_points": float(diffs.mean()),  # ours − baseline
        "per_subset_diff_points": [
            {"k": m["k"], "seed": m["seed"], "diff": float(dv)} for m, dv in zip(other, diffs, strict=True)
        ],
    }


# Reporting ----------------------------------------------------------------------------------------


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "sklearn": __import__("sklearn").__version__, "loadavg_start": _loadavg(),
    }


def _loadavg() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def fmt_s(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def print_table(subsets: list[Subset], ours: dict, lr: list[dict], sgd: list[dict]) -> None:
    def by_k(rows: list[dict]) -> dict[int, list[dict]]:
        out: dict[int, list[dict]] = {}
        for r in rows:
            out.setdefault(r["k"], []).append(r)
        return out

    def cells(rows: dict[int, list[dict]], k: int, iters: bool) -> str:
        if k not in rows:
            return f"{'—':>7} {'—':>8} {'—':>8}" + (f" {'—':>5}" if iters else "")
        rs = rows[k]
        out = (f"{100 * np.mean([r['accuracy'] for r in rs]):7.2f} "
               f"{fmt_s(float(np.mean([r['wall_s'] for r in rs]))):>8} "
               f"{fmt_s(float(np.mean([r['cpu_s'] for r in rs]))):>8}")
        return out + (f" {max(r['n_iter'] for r in rs):>5}" if iters else "")

    o, l, g = by_k(ours["per_subset"]), by_k(lr), by_k(sgd)
    seeds: dict[int, int] = {}
    frac: dict[int, float] = {}
    for s in subsets:
        seeds[s.k] = seeds.get(s.k, 0) + 1
        frac.setdefault(s.k, s.fraction)
    head = (f"{'fraction':>8} {'k':>5} {'seeds':>5} | {'ours %':>7} {'wall s':>8} {'CPU s':>8} | "
            f"{'LR %':>7} {'wall s':>8} {'CPU s':>8} {'iters':>5} | {'SGD %':>7} {'wall s':>8} {'CPU s':>8}")
    print(head)
    print("-" * len(head))
    for k in sorted(seeds):
        print(f"{frac[k]:>8g} {k:>5} {seeds[k]:>5} | {cells(o, k, False)} | {cells(l, k, True)} | "
              f"{cells(g, k, False)}")
    print("(test accuracy in %; times per subset. ours: mean over every seed of that k, run 1; "
          "LR / SGD: mean over the measured seeds)")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=50_000, help="train rows, before the 10%% validation hold-out")
    p.add_argument("--d", type=int, default=2048, help="layer width")
    p.add_argument("--n-test", type=int, default=10_000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seeds", type=int, default=5, help="subsets per fraction (the paper: 5)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch and BLAS threads for every method (default 1: see the module docstring)")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--master-seed", type=int, default=0, help="validation split and subset sampling")
    p.add_argument("--npz", type=Path, help="bench on real features instead (x_train, y_train, x_test, y_test)")
    p.add_argument("--baseline-subsets", type=int, default=None,
                   help="how many subsets the baselines are fitted on (default: one per distinct k)")
    p.add_argument("--full", action="store_true", help="fit the baselines on every subset of the grid")
    p.add_argument("--lr-C", default="1.0",
                   help="LogisticRegression C: a number (sklearn's default 1.0), or 'val' to pick one C\n"
                        f"from {LR_C_GRID} on the validation split at the full layer (timed, reported,\n"
                        "not charged to the LR grid)")
    p.add_argument("--lr-max-iter", type=int, default=100, help="LogisticRegression max_iter (sklearn default)")
    p.add_argument("--sgd-epochs", type=int, default=50, help="the paper's protocol: 50 epochs")
    p.add_argument("--logistic-probe", action="store_true",
                   help="also time the product's logistic probe (L-BFGS, C path + refit) per measured subset\n"
                        "against one sklearn LogisticRegression fit at the C it chose")
    p.add_argument("--no-lr", action="store_true", help="skip the LogisticRegression baseline")
    p.add_argument("--no-sgd", action="store_true", help="skip the SGD baseline")
    p.add_argument("--no-cka", action="store_true", help="skip timing GramCKA")
    p.add_argument("--no-check", action="store_true",
                   help="skip checking ours against the slow, obvious grid (accuracies, λ, f*)")
    p.add_argument("--stream-batch", type=int, default=None,
                   help="also time the accumulation fed this many rows per GramStats.update (as extraction\n"
                        "does, config.batch_size = 64 by default); reported separately")
    p.add_argument("--lambda-select", choices=["gcv", "val"], default="gcv",
                   help="ours: λ by GCV on all training rows (the product's default) or on the validation split")
    p.add_argument("--device", default="cpu",
                   help="where ours runs (accumulation and probes): cpu (scipy LAPACK) or cuda (torch);\n"
                        "the baselines and the --check reference stay on the CPU")
    p.add_argument("--quick", action="store_true", help="small sizes, a smoke run in seconds")
    p.add_argument("--json", type=Path, help="write every number to this file")
    a = p.parse_args(argv)
    if a.lr_C != "val":
        try:
            a.lr_C = float(a.lr_C)
        except ValueError:
            p.error("--lr-C takes a number or 'val'")
    if a.quick:
        a.n, a.d, a.n_test, a.seeds = 3000, 256, 1000, 2
        a.sgd_epochs = min(a.sgd_epochs, 2)
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    torch.set_num_threads(a.threads)
    with threadpool_limits(a.threads):
        return _main(a, argv if argv is not None else sys.argv[1:])


def _main(a: argparse.Namespace, argv: list[str]) -> int:
    command = " ".join(["python bench/probe_grid.py", *argv])
    t0 = time.perf_counter()
    if a.npz is not None:
        data = load_npz(a.npz, a.master_seed)
    else:
        x_tr, y_tr, x_te, y_te = synthetic_features(a.n, a.d, a.n_test, a.classes, a.data_seed)
        data = split_train(x_tr, y_tr, x_te, y_te, a.master_seed,
                           f"synthetic (data seed {a.data_seed}, {a.classes} classes)")
        del x_tr
    d = data.x_fit.shape[1]
    prep_s = time.perf_counter() - t0
    subsets, skipped = grid(d, a.seeds, a.master_seed)
    measured = subsets if a.full else choose_measured(subsets, a.baseline_subsets)
    info = machine()
    print(f"command: {command}")
    print(f"machine: {info['cpu']}, {info['logical_cpus']} logical CPUs; {a.threads} thread(s) for every method; "
          f"load average at start {info['loadavg_start']}")
    print(f"data: {data.source}; fit {data.x_fit.shape[0]} × {d}, val {data.x_val.shape[0]}, "
          f"test {data.x_test.shape[0]}, {data.num_classes} classes (prepared in {prep_s:.1f} s, not timed)")
    print(f"grid: {len(PAPER_FRACTIONS)} fractions × {a.seeds} seeds → {len(subsets)} subsets "
          f"({len({s.k for s in subsets})} distinct k; the full layer gets one seed)")
    for f, k, why in skipped:
        print(f"  skipped fraction {f} (k={k}): {why}")

    # Ours runs twice, before and after the baselines, so that a change of load on a shared machine
    # shows; the headline uses the slower run.
    print("\n[ours] Gram-space ridge grid (the product's path), run 1 …", flush=True)
    ours = run_ours(data, subsets, with_cka=not a.no_cka, stream_batch=a.stream_batch, select=a.lambda_select,
                    device=a.device)
    print("  " + describe_ours(ours))

    where = "every subset" if len(measured) == len(subsets) else (
        f"{len(measured)} of {len(subsets)} subsets (" + ", ".join(f"k={s.k}/seed {s.seed}" for s in measured) + ")"
    )
    lr: list[dict] = []
    lr_search: dict | None = None
    if not a.no_lr:
        c_reg = a.lr_C
        if c_reg == "val":
            full = max(subsets, key=lambda s: s.k)
            print(f"\n[baseline] choosing LogisticRegression's C on the validation split at k={full.k} …", flush=True)
            lr_search = search_lr_c(data, full, a.lr_max_iter)
            c_reg = lr_search["C"]
            print(f"  → C = {c_reg:g} ({lr_search['wall_s']:.1f} s; not charged to the LR grid)")
        print(f"\n[baseline] sklearn LogisticRegression per subset (lbfgs, C={c_reg:g}, max_iter={a.lr_max_iter}) "
              f"on {where} …", flush=True)
        for s in sorted(measured, key=lambda s: -s.k):
            r = fit_logistic(data, s, float(c_reg), a.lr_max_iter)
            lr.append(r)
            print(f"  k={s.k:>5} seed {s.seed}: {r['wall_s']:7.2f} s wall, {r['cpu_s']:7.2f} s CPU, "
                  f"{r['n_iter']:>4} iters, acc {100 * r['accuracy']:.2f}", flush=True)
    sgd: list[dict] = []
    if not a.no_sgd:
        print(f"\n[baseline] the paper's protocol: a logistic probe per subset trained by SGD ({a.sgd_epochs} epochs, "
              f"batch 256) on {where} …",
              flush=True)
        for s in sorted(measured, key=lambda s: -s.k):
            r = fit_sgd(data, s, a.sgd_epochs, seed=a.master_seed)
            sgd.append(r)
            print(f"  k={s.k:>5} seed {s.seed}: {r['wall_s']:7.2f} s wall, {r['cpu_s']:7.2f} s CPU, "
                  f"acc {100 * r['accuracy']:.2f}", flush=True)

    lbfgs_rows: list[dict] = []
    if a.logistic_probe:
        print(f"\n[logistic probe] ours (L-BFGS: {len(C_GRID)} C on validation, warm-started, + refit) against "
              f"sklearn LogisticRegression at the chosen C, on {where} …", flush=True)
        for s in sorted(measured, key=lambda s: -s.k):
            r = lbfgs_vs_sklearn(data, s, seed=a.master_seed)
            lbfgs_rows.append(r)
            print(f"  k={s.k:>5} seed {s.seed}: ours {r['ours']['cpu_s']:7.2f} s CPU ({r['ours']['wall_s']:.2f} wall), "
                  f"sklearn one fit {r['sklearn_one_fit']['cpu_s']:7.2f} s CPU "
                  f"(ours/sklearn {r['ours']['cpu_s'] / max(r['sklearn_one_fit']['cpu_s'], 1e-9):.1f}×); "
                  f"C={r['C']:g}; acc {100 * r['accuracy_ours']:.2f} vs {100 * r['accuracy_sklearn']:.2f}; "
                  f"objective (ours − sklearn)/sklearn "
                  f"{(r['objective_ours'] - r['objective_sklearn']) / r['objective_sklearn']:+.1e}",
                  flush=True)

    print("\n[ours] run 2 (after the baselines) …", flush=True)
    ours2 = run_ours(data, subsets, with_cka=False, select=a.lambda_select, device=a.device)
    print("  " + describe_ours(ours2))
    ours_total = {k: max(ours["total"][k], ours2["total"][k]) for k in ("wall_s", "cpu_s")}
    ours_probes = {k: max(ours["stages"]["probes"][k], ours2["stages"]["probes"][k]) for k in ("wall_s", "cpu_s")}

    print()
    print_table(subsets, ours, lr, sgd)
    print()
    extrapolated = len(measured) < len(subsets)
    result: dict = {
        "command": command, "machine": info, "threads": a.threads, "data": data.source,
        "sizes": {"n_fit": int(data.x_fit.shape[0]), "n_val": int(data.x_val.shape[0]),
                  "n_test": int(data.x_test.shape[0]), "d": d, "classes": data.num_classes,
                  "subsets": len(subsets), "seeds": a.seeds},
        "ours": ours, "ours_run2": ours2, "ours_total": ours_total, "ours_probes": ours_probes,
        "measured_subsets": [{"k": s.k, "seed": s.seed, "fraction": s.fraction} for s in measured],
        "extrapolated": extrapolated,
    }
    if not a.no_check and a.lambda_select == "gcv":
        print("[check] the slow, obvious grid (standardised from the rows, torch eigh / Cholesky) …", flush=True)
        ref = run_reference(data, subsets)
        cmp = compare_to_reference(ours["per_subset"], ref["per_subset"])
        result["reference"] = {**ref, "comparison": cmp}
        after = ours["after_accumulation"]
        print(f"  reference: {ref['wall_s']:.2f} s wall, {ref['cpu_s']:.2f} s CPU after the accumulation "
              f"(ours: {after['wall_s']:.2f} s wall, {after['cpu_s']:.2f} s CPU)")
        print(f"  fast vs reference on all {len(subsets)} subsets: max |Δ accuracy| "
              f"{cmp['max_abs_accuracy_diff_points']:.4f} points, λ differs on {cmp['lambda_differs']}; "
              f"f* (point rule) per δ fast {cmp['f_star_fast']} vs reference {cmp['f_star_reference']}")
    print(f"ours, slower of 2 runs: {ours_total['wall_s']:.2f} s wall / {ours_total['cpu_s']:.2f} s CPU for the "
          f"whole grid; of which the {len(subsets)} probes {ours_probes['wall_s']:.2f} s wall / "
          f"{ours_probes['cpu_s']:.2f} s CPU")
    basis = (f"extrapolated from {len(measured)} measured subsets: each unmeasured subset is charged the "
             f"measured time of its k" if extrapolated else "measured on every subset")
    for name, rows, key in (("LogisticRegression", lr, "lr"), ("SGD probe", sgd, "sgd")):
        if not rows:
            continue
        wall, how = extrapolate(subsets, rows, "wall_s")
        cpu, _ = extrapolate(subsets, rows, "cpu_s")
        agree = agreement(ours["per_subset"], rows)
        sp = {"wall": wall / ours_total["wall_s"], "cpu": cpu / ours_total["cpu_s"],
              "wall_probes_only": wall / ours_probes["wall_s"], "cpu_probes_only": cpu / ours_probes["cpu_s"]}
        result[key] = {"per_subset": rows, "grid_total": {"wall_s": wall, "cpu_s": cpu},
                       "measured": {"wall_s": sum(r["wall_s"] for r in rows),
                                    "cpu_s": sum(r["cpu_s"] for r in rows)},
                       "costing": {str(k): v for k, v in how.items()}, "agreement": agree, "speedup": sp}
        print(f"{name} grid: {wall:.1f} s wall / {cpu:.1f} s CPU ({basis}; "
              f"{result[key]['measured']['wall_s']:.1f} s wall actually spent)")
        print(f"  speed-up vs {name}: {sp['wall']:.1f}× wall, {sp['cpu']:.1f}× CPU (whole grid incl. "
              f"accumulation); probes only: {sp['wall_probes_only']:.1f}× wall, {sp['cpu_probes_only']:.1f}× CPU")
        print(f"  accuracy, ours − {name} on {agree['subsets']} subset(s): mean |Δ| "
              f"{agree['mean_abs_diff_points']:.2f} points, max |Δ| {agree['max_abs_diff_points']:.2f} "
              f"points, mean Δ {agree['mean_signed_diff_points']:+.2f}")
    if lr_search is not None:
        result["lr_C_search"] = lr_search
    if lbfgs_rows:
        result["logistic_probe"] = lbfgs_rows
    if "lr" in result:
        ok_speed = min(result["lr"]["speedup"]["wall"], result["lr"]["speedup"]["cpu"]) >= 100
        ok_acc = result["lr"]["agreement"]["max_abs_diff_points"] <= 2
        result["target_met"] = {"speedup_ge_100x_vs_lr": ok_speed, "accuracy_within_2_points_of_lr": ok_acc}
        print(f"target ≥100× vs LR (wall and CPU): {'met' if ok_speed else 'NOT met'}; accuracy within 2 points "
              f"of LR on every measured subset: {'met' if ok_acc else 'NOT met'}")
    result["loadavg_end"] = _loadavg()
    print(f"load average at end {result['loadavg_end']}")
    if a.json is not None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=2, default=_jsonable))
        print(f"wrote {a.json}")
    return 0


def _jsonable(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)  # type: ignore[arg-type]
    raise TypeError(type(o).__name__)


if __name__ == "__main__":
    raise SystemExit(main())
