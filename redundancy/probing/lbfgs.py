"""Multinomial logistic probes solved to the optimum of their objective: full-batch L-BFGS.

The objective of a probe on the neurons `S`, with standardised features `z` and labels `y` over
`n` rows, is scikit-learn's `LogisticRegression(C=C)` (multinomial, intercept not penalised):

    J(W, b) = (1/n)·Σ_i CE(softmax(z_i,S W + b), y_i) + ‖W‖²_F / (2·C·n)

i.e. `½‖W‖² + C·Σ CE` divided by `C·n`: the same minimiser. It is minimised by scipy's L-BFGS-B
on the full batch in float64 (`fit_lbfgs`) until the largest gradient entry is below `GTOL`
(tight enough that `J` is within 1e-4 relative of the optimum; a test checks it against sklearn).

**C** is chosen per subset from `C_GRID` by accuracy on a validation split (ties: the smaller C,
more regularised), the fits warm-started along the path from the smallest C up, then the probe is
refitted at that C on every training row (fit + validation split), warm-started from the
selection fit, and scored on test. The validation split (`selection_split`): the configured one
when it holds at least `MIN_VAL_PER_CLASS` = 5 images of every class; otherwise the pooled
training rows are split again per class, holding out `max(5, ⌈share·n_c⌉)` images of each class
but never more than half of it (the fallback: a class with fewer than 10 images holds out
⌊n_c/2⌋, a class of one image none). Features are standardised with the mean and standard
deviation of all training rows (constant neurons only centred). The point's `lam` is `1/C`: the
penalty `‖W‖²/(2C)` on the summed cross-entropy, larger = more regularised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch
from threadpoolctl import threadpool_limits

from redundancy.errors import Cancelled
from redundancy.probing.logistic import LogisticProbeResult
from redundancy.probing.ridge import per_class_accuracy

C_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
MIN_VAL_PER_CLASS = 5
GTOL = 1e-5  # max |∂J| at the stop, on the 1/n-scaled objective (sklearn: tol = 1e-4)
MAX_ITER = 3000
ONE_THREAD_BELOW = 2_000_000  # n·k under which a CPU fit runs on one torch thread (see `_threads`)


def objective(z: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray, c: float) -> float:
    """`J(W, b)` the slow, obvious way (for checks): mean cross-entropy plus `‖W‖²/(2Cn)`."""
    z, w, b = (np.asarray(a, dtype=np.float64) for a in (z, w, b))
    logits = z @ w + b
    logits -= logits.max(1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    n = z.shape[0]
    return float(-logp[np.arange(n), y].mean() + (w**2).sum() / (2.0 * c * n))


@contextmanager
def _threads(z: torch.Tensor) -> Iterator[None]:
    """One thread (torch's and the BLAS pools', which scipy's L-BFGS-B uses) for a small CPU problem.
    A full-batch L-BFGS step is a handful of small ops, and threads only add synchronisation: on the
    shared 2-core machine under load, a 150 × 10 probe took 25 s with 2 threads and 0.2 s with one.
    Restored afterwards."""
    if z.device.type != "cpu" or z.shape[0] * z.shape[1] >= ONE_THREAD_BELOW:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(old)


@dataclass
class Fit:
    w: np.ndarray  # (k, C)
    b: np.ndarray  # (C,)
    n_iter: int
    converged: bool


def fit_lbfgs(
    z: torch.Tensor, y: torch.Tensor, num_classes: int, c: float, start: Fit | None = None,
    gtol: float = GTOL, max_iter: int = MAX_ITER,
) -> Fit:
    """Minimise `J` for one probe on the rows `z` (n × k, float64 on any device), from `start`
    (warm start) or zeros."""
    n, k = z.shape
    onehot = torch.nn.functional.one_hot(y, num_classes).to(z.dtype)
    reg = 1.0 / (c * n)

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        t = torch.as_tensor(theta, dtype=z.dtype, device=z.device)
        w, b = t[: k * num_classes].view(k, num_classes), t[k * num_classes :]
        logits = z @ w + b
        logp = torch.log_softmax(logits, dim=1)
        loss = -(logp * onehot).sum() / n + 0.5 * reg * float((w * w).sum())
        resid = (logp.exp() - onehot) / n
        grad = torch.cat([(z.T @ resid + reg * w).reshape(-1), resid.sum(0)])
        return float(loss), grad.cpu().numpy()

    theta0 = (np.concatenate([start.w.ravel(), start.b]) if start is not None
              else np.zeros(k * num_classes + num_classes))
    with _threads(z):
        res = scipy.optimize.minimize(fun, theta0, jac=True, method="L-BFGS-B",
                                      options={"maxiter": max_iter, "gtol": gtol, "ftol": 1e-15, "maxcor": 20})
    theta = res.x
    return Fit(w=theta[: k * num_classes].reshape(k, num_classes), b=theta[k * num_classes :],
               n_iter=int(res.nit), converged=bool(res.success))


def selection_split(y_fit: np.ndarray, y_val: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Indices into the pooled rows `[fit; val]` of the rows C is fitted on and the rows it is chosen
    on, and a sentence saying which rule made them (see the module docstring)."""
    n_fit = len(y_fit)
    pooled = np.concatenate([y_fit, y_val])
    classes = np.unique(pooled)
    counts = np.bincount(np.asarray(y_val), minlength=int(classes.max()) + 1)
    if len(y_val) and counts[classes].min() >= MIN_VAL_PER_CLASS:
        return np.arange(n_fit), n_fit + np.arange(len(y_val)), "the configured validation split"
    share = len(y_val) / max(len(pooled), 1)
    rng = np.random.default_rng([seed, 0x4C42])  # "LB"
    fit, val = [], []
    for cls in classes:
        rows = rng.permutation(np.flatnonzero(pooled == cls))
        hold = min(max(MIN_VAL_PER_CLASS, int(np.ceil(share * len(rows)))), len(rows) // 2)
        val.append(rows[:hold])
        fit.append(rows[hold:])
    smallest = int(np.bincount(pooled)[classes].min())
    how = (f"the training rows split again with at least {MIN_VAL_PER_CLASS} validation images per class"
           if smallest >= 2 * MIN_VAL_PER_CLASS else
           f"the training rows split again, half of each class with fewer than {2 * MIN_VAL_PER_CLASS} "
           f"images held out (smallest class: {smallest})")
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(val)), how


def standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of the rows (a constant neuron gets scale 1: only centred)."""
    x = np.asarray(x, dtype=np.float64)
    mean, sd = x.mean(0), x.std(0)
    return mean, np.where(sd > 1e-12 * max(1.0, float(sd.max(initial=0.0))), sd, 1.0)


def train_logistic_lbfgs(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    subsets: Sequence[np.ndarray],
    num_classes: int,
    *,
    c_grid: Sequence[float] = C_GRID,
    device: str | torch.device = "cpu",
    seed: int = 0,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[LogisticProbeResult]:
    """One probe per subset at the optimum of `J`, C chosen on validation, refitted on every training
    row (see the module docstring). `val_accuracy` is the chosen C's; `lam` is 1/C; `best_epoch`
    holds the refit's L-BFGS iterations."""
    dev = torch.device(device)
    x_all = np.concatenate([np.asarray(x_train, np.float64), np.asarray(x_val, np.float64)])
    y_all = np.concatenate([np.asarray(y_train), np.asarray(y_val)]).astype(np.int64)
    fit_idx, val_idx, _ = selection_split(np.asarray(y_train), np.asarray(y_val), seed)
    mean, sd = standardise(x_all)
    z_all = torch.as_tensor((x_all - mean) / sd, device=dev)
    z_test = torch.as_tensor((np.asarray(x_test, np.float64) - mean) / sd, device=dev)
    y_test = np.asarray(y_test, dtype=np.int64)
    t_all = torch.as_tensor(y_all, device=dev)
    fit_rows, val_rows = torch.as_tensor(fit_idx, device=dev), torch.as_tensor(val_idx, device=dev)
    cs = sorted(c_grid)
    y_val_sel = y_all[val_idx]
    out = []
    for i, s in enumerate(subsets):
        if should_stop is not None and should_stop():
            raise Cancelled("cancelled during logistic probing")
        cols = torch.as_tensor(np.asarray(s, dtype=np.int64), device=dev)
        z = z_all[:, cols]
        z_fit, z_val, t_fit = z[fit_rows], z[val_rows].cpu().numpy(), t_all[fit_rows]
        fits, accs, prev = [], [], None
        for c in cs:  # the C path, each fit warm-started from the previous C's
            prev = fit_lbfgs(z_fit, t_fit, num_classes, c, prev)
            fits.append(prev)
            accs.append(float(((z_val @ prev.w + prev.b).argmax(1) == y_val_sel).mean()) if len(val_idx) else 0.0)
        best = int(np.flatnonzero(np.asarray(accs) == max(accs)).min())  # ties: the smaller C
        final = fit_lbfgs(z, t_all, num_classes, cs[best], fits[best])
        pred = (z_test[:, cols].cpu().numpy() @ final.w + final.b).argmax(1)
        correct = pred == y_test
        out.append(LogisticProbeResult(
            accuracy=float(correct.mean()), per_class_accuracy=per_class_accuracy(pred, y_test, num_classes),
            lam=1.0 / cs[best], correct=correct, best_epoch=final.n_iter, val_accuracy=accs[best],
            coef=final.w, intercept=final.b,
        ))
        if progress is not None:
            progress((i + 1) / len(subsets))
    return out
