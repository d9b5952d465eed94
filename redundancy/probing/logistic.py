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
from redundancy.probing.ridge import ProbeResult, per_class_accuracy

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


@dataclass
class _Data:
    """The three splits, standardised with the train mean and standard deviation, on the device."""

    z_train: torch.Tensor
    t_train: torch.Tensor
    z_val: torch.Tensor
    t_val: torch.Tensor
    z_test: torch.Tensor
    y_test: np.ndarray

    @property
    def n(self) -> int:
        return int(self.z_train.shape[0])


def _standardise(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                 x_test: np.ndarray, y_test: np.ndarray, dev: torch.device) -> _Data:
    """`(x − mean) / sd` with the train statistics; constant columns (sd ≈ 0) are only centred."""
    x_train = np.asarray(x_train, dtype=np.float64)
    mean = x_train.mean(0)
    sd = x_train.std(0)
    sd = np.where(sd > 1e-12 * max(1.0, float(sd.max(initial=0.0))), sd, 1.0)

    def prep(x: np.ndarray) -> torch.Tensor:
        z = (np.asarray(x, dtype=np.float64) - mean) / sd
        return torch.as_tensor(z, dtype=torch.float32, device=dev)

    return _Data(
        z_train=prep(x_train), t_train=torch.as_tensor(np.asarray(y_train), dtype=torch.long, device=dev),
        z_val=prep(x_val), t_val=torch.as_tensor(np.asarray(y_val), dtype=torch.long, device=dev),
        z_test=prep(x_test), y_test=np.asarray(y_test, dtype=np.int64),
    )


def _epoch_orders(n: int, epochs: int, seed: int, dev: torch.device) -> list[torch.Tensor]:
    """One permutation per epoch, drawn up front: every chunk sees the same order."""
    gen = torch.Generator().manual_seed(int(seed))
    return [torch.randperm(n, generator=gen).to(dev) for _ in range(epochs)]


def _groups_of(chunk: list[int], subsets: list[np.ndarray], c: int, dev: torch.device) -> list[_Group]:
    """The chunk's probes grouped by subset size, in order of first appearance."""
    by_k: dict[int, list[int]] = {}
    for i in chunk:
        by_k.setdefault(len(subsets[i]), []).append(i)
    return [_Group(members, subsets, c, dev) for members in by_k.values()]


def _batch_loss(groups: list[_Group], xb: torch.Tensor, yb: torch.Tensor, c: int) -> torch.Tensor:
    """Sum over probes of each probe's mean cross-entropy: each probe gets its own gradient."""
    loss = xb.new_zeros(())
    for g in groups:
        logits = g.logits(xb)  # (P_k, B, C)
        loss = loss + torch.nn.functional.cross_entropy(
            logits.reshape(-1, c), yb.repeat(logits.shape[0]), reduction="sum"
        ) / yb.shape[0]
    return loss


def _sgd_epoch(groups: list[_Group], opt: torch.optim.Optimizer, data: _Data, order: torch.Tensor,
               batch_size: int, c: int, should_stop: Callable[[], bool] | None) -> None:
    """One pass over the train rows in `order`, one SGD step per mini-batch."""
    for start in range(0, data.n, batch_size):
        if should_stop is not None and should_stop():
            raise Cancelled("cancelled during logistic probing")
        rows = order[start : start + batch_size]
        opt.zero_grad(set_to_none=True)
        _batch_loss(groups, data.z_train[rows], data.t_train[rows], c).backward()
        opt.step()


@dataclass
class _Best:
    """Per probe: the best validation accuracy so far and its epoch (ties keep the earlier)."""

    val: dict[int, float]
    epoch: dict[int, int]

    @classmethod
    def start(cls, chunk: list[int]) -> _Best:
        return cls(val={i: -1.0 for i in chunk}, epoch={i: -1 for i in chunk})

    def update(self, groups: list[_Group], data: _Data, epoch: int, dev: torch.device) -> None:
        """Score every probe on validation; copy the weights of those that improved."""
        val_pred = _predict(groups, data.z_val, best=False)
        for g in groups:
            improved = []
            for j, i in enumerate(g.members):
                acc = float((val_pred[i] == data.t_val).float().mean())
                if acc > self.val[i]:
                    self.val[i], self.epoch[i] = acc, epoch
                    improved.append(j)
            if improved:
                sel = torch.as_tensor(improved, device=dev)
                with torch.no_grad():
                    g.best_w[sel] = g.w.detach()[sel]
                    g.best_b[sel] = g.b.detach()[sel]


def _score(groups: list[_Group], chunk: list[int], data: _Data, best: _Best, c: int, weight_decay: float,
           keep_weights: bool) -> dict[int, LogisticProbeResult]:
    """Each probe of the chunk on test, at its best-validation weights."""
    test_pred = _predict(groups, data.z_test, best=True)
    kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if keep_weights:
        for g in groups:
            for j, i in enumerate(g.members):
                kept[i] = (g.best_w[j].cpu().numpy(), g.best_b[j, 0].cpu().numpy())
    out = {}
    for i in chunk:
        pred = test_pred[i].cpu().numpy()
        correct = pred == data.y_test
        out[i] = LogisticProbeResult(
            accuracy=float(correct.mean()),
            per_class_accuracy=per_class_accuracy(pred, data.y_test, c),
            lam=float(weight_decay),
            correct=correct,
            best_epoch=best.epoch[i],
            val_accuracy=best.val[i],
            coef=kept[i][0] if keep_weights else None,
            intercept=kept[i][1] if keep_weights else None,
        )
    return out


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
    data = _standardise(x_train, y_train, x_val, y_val, x_test, y_test, dev)
    subsets = [np.asarray(s, dtype=np.int64) for s in subsets]
    milestones = step_milestones(epochs)
    orders = _epoch_orders(data.n, epochs, seed, dev)
    chunks = _chunks(subsets, num_classes, max_params)
    results: dict[int, LogisticProbeResult] = {}
    steps_done = 0
    for chunk in chunks:
        groups = _groups_of(chunk, subsets, num_classes, dev)
        opt = torch.optim.SGD([p for g in groups for p in (g.w, g.b)], lr=lr, momentum=momentum,
                              weight_decay=weight_decay)
        best = _Best.start(chunk)
        for epoch in range(epochs):
            for group in opt.param_groups:
                group["lr"] = _lr_at(epoch, lr, milestones)
            _sgd_epoch(groups, opt, data, orders[epoch], batch_size, num_classes, should_stop)
            best.update(groups, data, epoch, dev)
            steps_done += 1
            if progress is not None:
                progress(steps_done / (len(chunks) * epochs))
        results |= _score(groups, chunk, data, best, num_classes, weight_decay, keep_weights)
    return [results[i] for i in range(len(subsets))]
