"""Multinomial logistic probes on neuron subsets, all subsets of a grid trained as one batched model.

The paper-faithful probe (Nanda et al. 2023): softmax regression with weight decay, SGD with
momentum and step decay, the best-validation epoch kept. Here every subset of a grid is trained at
once: subsets of equal size `k` form one group whose inputs are gathered, `(P_k, B, k)`, and whose
weights are one tensor `(P_k, k, C)`, so a step costs `Σ_probes k·C` per sample, not `P·d·C`.

Each probe's parameters, gradients and momentum are its own (the loss is a sum over probes and SGD
updates are element-wise), and all probes see the same mini-batches in the same order with a zero
initialisation, so the batched result equals training each subset on its own, whatever else is in
the batch. Features are standardised with the train mean and standard deviation; weight decay
applies to weights and biases, as `torch.optim.SGD(linear.parameters(), weight_decay=...)` does.
Features are cached and un-augmented (the paper augmented images at every step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from redundancy.errors import Cancelled
from redundancy.probes.ridge import ProbeResult, per_class_accuracy

# Probes whose weights together exceed this many floats are trained in separate chunks (same data
# order, so the result does not change); weights, gradients, momentum and the best copy are kept.
DEFAULT_MAX_PARAMS = 50_000_000


@dataclass
class LogisticProbeResult(ProbeResult):
    """A `ProbeResult` with what only a trained probe knows."""

    correct: np.ndarray | None = None  # (n_test,) bool: per-sample correctness on test
    best_epoch: int = -1  # 0-based epoch whose validation accuracy was best (ties: the earlier)
    val_accuracy: float = float("nan")
    coef: np.ndarray | None = None  # (k, C) best-validation weights on standardised features, if kept
    intercept: np.ndarray | None = None  # (C,)


def step_milestones(epochs: int) -> list[int]:
    """Epochs after which the learning rate is multiplied by 0.1: at 1/2 and 3/4 of training."""
    return sorted({m for m in (epochs // 2, (3 * epochs) // 4) if 0 < m < epochs})


def _lr_at(epoch: int, lr: float, milestones: Sequence[int], gamma: float = 0.1) -> float:
    return lr * gamma ** sum(epoch >= m for m in milestones)


class _Group:
    """All probes of one subset size: gathered inputs, one weight tensor."""

    def __init__(self, members: list[int], subsets: list[np.ndarray], c: int, dev: torch.device) -> None:
        self.members = members
        self.idx = torch.as_tensor(np.stack([subsets[i] for i in members]), dtype=torch.long, device=dev)
        p, k = self.idx.shape
        self.w = torch.zeros((p, k, c), device=dev, requires_grad=True)
        self.b = torch.zeros((p, 1, c), device=dev, requires_grad=True)
        self.best_w = self.w.detach().clone()
        self.best_b = self.b.detach().clone()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """`(P_k, B, C)` logits of every probe of the group on the rows `x` (B × d)."""
        return torch.bmm(x[:, self.idx].transpose(0, 1), self.w) + self.b

    def best_logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x[:, self.idx].transpose(0, 1), self.best_w) + self.best_b


def _chunks(subsets: list[np.ndarray], c: int, max_params: int) -> list[list[int]]:
    """Consecutive probes (in input order) whose weights fit in `max_params` floats together."""
    out: list[list[int]] = [[]]
    used = 0
    for i, s in enumerate(subsets):
        size = (len(s) + 1) * c
        if out[-1] and used + size > max_params:
            out.append([])
            used = 0
        out[-1].append(i)
        used += size
    return out


def _predict(groups: list[_Group], x: torch.Tensor, best: bool, batch: int = 4096) -> dict[int, torch.Tensor]:
    """Argmax predictions of every probe on all rows of `x`, in row batches."""
    preds: dict[int, list[torch.Tensor]] = {i: [] for g in groups for i in g.members}
    with torch.no_grad():
        for start in range(0, x.shape[0], batch):
            xb = x[start : start + batch]
            for g in groups:
                pred = (g.best_logits(xb) if best else g.logits(xb)).argmax(-1)
                for j, i in enumerate(g.members):
                    preds[i].append(pred[j])
    return {i: torch.cat(p) for i, p in preds.items()}


def train_logistic_grid(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    subsets: list[np.ndarray],
    num_classes: int,
    *,
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    device: str | torch.device = "cpu",
    seed: int = 0,
    max_params: int = DEFAULT_MAX_PARAMS,
    keep_weights: bool = False,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[LogisticProbeResult]:
    """Train one softmax probe per subset, all together; score each at its best-validation epoch.

    Parameters
    ----------
    subsets
        Neuron indices per probe; any sizes, repeats allowed.
    epochs, batch_size, lr, momentum, weight_decay
        SGD hyper-parameters; the learning rate drops ×0.1 at 1/2 and 3/4 of the epochs.
    seed
        Seeds the mini-batch order, which all probes share.
    max_params
        Train in chunks of probes whose weights total at most this many floats (memory bound).
    keep_weights
        Return each probe's best-validation weights (on standardised features) too.
    should_stop, progress
        Cancellation hook (raises `Cancelled`) and a 0..1 progress callback.

    Returns
    -------
    One `LogisticProbeResult` per subset, in order; `lam` holds the weight decay.
    """
    if epochs < 1:
        raise ValueError("epochs must be >= 1")
    dev = torch.device(device)
    x_train = np.asarray(x_train, dtype=np.float64)
    mean = x_train.mean(0)
    sd = x_train.std(0)
    sd = np.where(sd > 1e-12 * max(1.0, float(sd.max(initial=0.0))), sd, 1.0)

    def prep(x: np.ndarray) -> torch.Tensor:
        z = (np.asarray(x, dtype=np.float64) - mean) / sd
        return torch.as_tensor(z, dtype=torch.float32, device=dev)

    z_train, z_val, z_test = prep(x_train), prep(x_val), prep(x_test)
    t_train = torch.as_tensor(np.asarray(y_train), dtype=torch.long, device=dev)
    t_val = torch.as_tensor(np.asarray(y_val), dtype=torch.long, device=dev)
    y_test_np = np.asarray(y_test, dtype=np.int64)
    n = z_train.shape[0]
    subsets = [np.asarray(s, dtype=np.int64) for s in subsets]
    milestones = step_milestones(epochs)

    # One permutation per epoch, drawn up front: every chunk sees the same order.
    gen = torch.Generator().manual_seed(int(seed))
    orders = [torch.randperm(n, generator=gen).to(dev) for _ in range(epochs)]

    results: dict[int, LogisticProbeResult] = {}
    chunks = _chunks(subsets, num_classes, max_params)
    steps_total = len(chunks) * epochs
    steps_done = 0
    for chunk in chunks:
        by_k: dict[int, list[int]] = {}
        for i in chunk:
            by_k.setdefault(len(subsets[i]), []).append(i)
        groups = [_Group(members, subsets, num_classes, dev) for members in by_k.values()]
        params = [p for g in groups for p in (g.w, g.b)]
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        best_val = {i: -1.0 for i in chunk}
        best_epoch = {i: -1 for i in chunk}
        for epoch in range(epochs):
            for group in opt.param_groups:
                group["lr"] = _lr_at(epoch, lr, milestones)
            order = orders[epoch]
            for start in range(0, n, batch_size):
                if should_stop is not None and should_stop():
                    raise Cancelled("cancelled during logistic probing")
                rows = order[start : start + batch_size]
                xb, yb = z_train[rows], t_train[rows]
                opt.zero_grad(set_to_none=True)
                loss = z_train.new_zeros(())
                for g in groups:
                    logits = g.logits(xb)  # (P_k, B, C)
                    # sum over probes of each probe's mean cross-entropy: independent gradients
                    loss = loss + torch.nn.functional.cross_entropy(
                        logits.reshape(-1, num_classes), yb.repeat(logits.shape[0]), reduction="sum"
                    ) / yb.shape[0]
                loss.backward()
                opt.step()
            val_pred = _predict(groups, z_val, best=False)
            for g in groups:
                improved = []
                for j, i in enumerate(g.members):
                    acc = float((val_pred[i] == t_val).float().mean())
                    if acc > best_val[i]:
                        best_val[i], best_epoch[i] = acc, epoch
                        improved.append(j)
                if improved:
                    sel = torch.as_tensor(improved, device=dev)
                    with torch.no_grad():
                        g.best_w[sel] = g.w.detach()[sel]
                        g.best_b[sel] = g.b.detach()[sel]
            steps_done += 1
            if progress is not None:
                progress(steps_done / steps_total)
        test_pred = _predict(groups, z_test, best=True)
        kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if keep_weights:
            for g in groups:
                for j, i in enumerate(g.members):
                    kept[i] = (g.best_w[j].cpu().numpy(), g.best_b[j, 0].cpu().numpy())
        for i in chunk:
            pred = test_pred[i].cpu().numpy()
            correct = pred == y_test_np
            results[i] = LogisticProbeResult(
                accuracy=float(correct.mean()),
                per_class_accuracy=per_class_accuracy(pred, y_test_np, num_classes),
                lam=float(weight_decay),
                correct=correct,
                best_epoch=best_epoch[i],
                val_accuracy=best_val[i],
                coef=kept[i][0] if keep_weights else None,
                intercept=kept[i][1] if keep_weights else None,
            )
    return [results[i] for i in range(len(subsets))]
