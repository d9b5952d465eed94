"""Sufficient statistics of a feature matrix, accumulated in one streaming pass.

Everything after extraction (ridge probes, CKA, PCA baselines) is computed from these: `n`, `Σx`,
the raw Gram `XᵀX` and the per-class sums. They are additive, so partial statistics from several
shards or workers can be merged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class GramStats:
    """Float64 accumulators over the rows of `X` (n × d) with labels `y` in `0..C-1`."""

    n: int
    total: np.ndarray  # (d,)   Σx
    gram: np.ndarray  # (d, d) XᵀX, raw (uncentred)
    class_sums: np.ndarray  # (C, d) Σ_{y=c} x
    class_counts: np.ndarray  # (C,)

    @classmethod
    def empty(cls, d: int, num_classes: int) -> GramStats:
        return cls(
            n=0,
            total=np.zeros(d),
            gram=np.zeros((d, d)),
            class_sums=np.zeros((num_classes, d)),
            class_counts=np.zeros(num_classes, dtype=np.int64),
        )

    @classmethod
    def from_features(cls, x: np.ndarray, y: np.ndarray, num_classes: int) -> GramStats:
        stats = cls.empty(x.shape[1], num_classes)
        stats.update(x, y)
        return stats

    @property
    def d(self) -> int:
        return int(self.total.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.class_counts.shape[0])

    def update(self, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> None:
        """Add a batch of rows. Accepts numpy or torch (any device); sums in float64.

        For many small batches use `GramAccumulator`, which buffers rows and keeps its sums on the
        device; this is the same computation for one batch."""
        acc = GramAccumulator(self.d, self.num_classes, device=torch.as_tensor(x).device)
        acc.update(x, y)
        other = acc.result()
        self.n += other.n
        self.total += other.total
        self.gram += other.gram
        self.class_sums += other.class_sums
        self.class_counts += other.class_counts

    def merge(self, other: GramStats) -> GramStats:
        """The statistics of the union of two disjoint sets of rows."""
        return GramStats(
            n=self.n + other.n,
            total=self.total + other.total,
            gram=self.gram + other.gram,
            class_sums=self.class_sums + other.class_sums,
            class_counts=self.class_counts + other.class_counts,
        )

    def columns(self, start: int, stop: int) -> GramStats:
        """The statistics of the columns `[start, stop)` alone (one layer of a sweep's joined columns): the
        diagonal block of the Gram and those columns of the sums, exactly (copies)."""
        return GramStats(n=self.n, total=self.total[start:stop].copy(), gram=self.gram[start:stop, start:stop].copy(),
                         class_sums=self.class_sums[:, start:stop].copy(), class_counts=self.class_counts.copy())

    # Derived quantities -------------------------------------------------------------------------

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.n

    def centred_gram(self) -> np.ndarray:
        """`X_cᵀ X_c` with `X_c = X − 1μᵀ`: `XᵀX − n μμᵀ`."""
        mu = self.mean
        g = self.gram - self.n * np.outer(mu, mu)
        return (g + g.T) / 2

    def std(self) -> np.ndarray:
        """Population standard deviation per neuron; constant neurons get 1 (they stay zero)."""
        return _safe_std(np.diag(self.centred_gram()) / self.n)

    def standardised(self) -> Standardised:
        """Gram and targets of the standardised, centred features with centred one-hot targets."""
        mu, sd = self.mean, self.std()
        gc = self.centred_gram()
        gs = gc / np.outer(sd, sd)
        # X_cᵀ Y_c = X_cᵀ Y (columns of X_c sum to 0); column c is Σ_{y=c}(x − μ).
        b = (self.class_sums - np.outer(self.class_counts, mu)).T / sd[:, None]
        prior = self.class_counts / self.n
        return Standardised(mean=mu, std=sd, gram=gs, targets=b, prior=prior, n=self.n)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "n": np.asarray(self.n),
            "total": self.total,
            "gram": self.gram,
            "class_sums": self.class_sums,
            "class_counts": self.class_counts,
        }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> GramStats:
        return cls(
            n=int(a["n"]),
            total=np.asarray(a["total"]),
            gram=np.asarray(a["gram"]),
            class_sums=np.asarray(a["class_sums"]),
            class_counts=np.asarray(a["class_counts"]),
        )


def _safe_std(var: np.ndarray) -> np.ndarray:
    """Standard deviations from variances; constant neurons get 1 (they stay zero)."""
    sd = np.sqrt(np.clip(var, 0.0, None))
    return np.where(sd > 1e-12 * max(1.0, float(sd.max(initial=0.0))), sd, 1.0)


def standardised_from_rows(x: np.ndarray, y: np.ndarray, num_classes: int) -> Standardised:
    """`GramStats.from_features(x, y, C).standardised()` computed from centred rows.

    The same quantities, without the cancellation of `XᵀX − nμμᵀ` (which leaves rounding noise of
    order `ε·‖XᵀX‖` in the centred Gram and makes its null space, when n ≤ d, slightly negative)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    n = x.shape[0]
    mu = x.mean(0)
    xc = x - mu
    sd = _safe_std((xc * xc).sum(0) / n)
    z = torch.from_numpy(xc / sd)
    gram = (z.T @ z).numpy()
    onehot = np.eye(num_classes)[y]
    prior = onehot.sum(0) / n
    targets = (z.T @ torch.from_numpy(onehot - prior)).numpy()
    return Standardised(mean=mu, std=sd, gram=(gram + gram.T) / 2, targets=targets, prior=prior, n=n)


class GramAccumulator:
    """Streams rows into the float64 sums on the rows' device, in blocks of `block` rows.

    A float64 product per small batch is memory-bound (it rewrites the whole d × d sum); buffering
    rows and adding in place with `addmm_` makes the pass compute-bound. Nothing leaves the device
    until `result()`.
    """

    def __init__(self, d: int, num_classes: int, device: str | torch.device = "cpu", block: int = 4096) -> None:
        self.device = torch.device(device)
        opts = {"dtype": torch.float64, "device": self.device}
        self.n = 0
        self.total = torch.zeros(d, **opts)
        self.gram = torch.zeros((d, d), **opts)
        self.class_sums = torch.zeros((num_classes, d), **opts)
        self.class_counts = torch.zeros(num_classes, dtype=torch.long, device=self.device)
        self.block = block
        self._rows: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._pending = 0

    def update(self, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> None:
        xt = torch.as_tensor(x).to(self.device)
        self._rows.append(xt)
        self._labels.append(torch.as_tensor(y).to(device=self.device, dtype=torch.long))
        self._pending += int(xt.shape[0])
        if self._pending >= self.block:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        x = torch.cat(self._rows).to(torch.float64)
        y = torch.cat(self._labels)
        self._rows, self._labels, self._pending = [], [], 0
        self.n += int(x.shape[0])
        self.total += x.sum(0)
        self.gram.addmm_(x.T, x)
        self.class_sums.index_add_(0, y, x)
        self.class_counts += torch.bincount(y, minlength=self.class_counts.shape[0])

    def result(self) -> GramStats:
        self._flush()
        return GramStats(
            n=self.n,
            total=self.total.cpu().numpy(),
            gram=self.gram.cpu().numpy(),
            class_sums=self.class_sums.cpu().numpy(),
            class_counts=self.class_counts.cpu().numpy(),
        )


@dataclass
class Standardised:
    """Quantities of the standardised problem: `z = (x − mean) / std`."""

    mean: np.ndarray  # (d,)
    std: np.ndarray  # (d,)
    gram: np.ndarray  # (d, d) ZᵀZ
    targets: np.ndarray  # (d, C) ZᵀY_c
    prior: np.ndarray  # (C,) class frequencies: the intercept of a centred-target regression
    n: int

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.std


# Rounding of `XᵀX − nμμᵀ` is negligible at this size relative to n (see `cancellation_error`).
CANCELLATION_TOL = 1e-9


def cancellation_error(stats: GramStats) -> float:
    """A bound, relative to n, on the rounding error of `stats.standardised().gram`.

    Each entry of the float64 sums carries an error of about `ε·Σ_t |x_ti x_tj| ≤ ε·n·√(m_i m_j)`
    (`m_i` the second moment of neuron i); the centring `XᵀX − nμμᵀ` keeps it and the standardisation
    divides it by `σ_i σ_j`. The error matrix's Frobenius (so spectral) norm is then at most
    `ε·n·Σ_i r_i`, `r_i = m_i / σ_i²` (= 1 + μ_i²/σ_i²; σ the `std()` used, 1 for constant neurons),
    and this returns `ε·Σ_i r_i`."""
    second = np.diag(stats.gram) / stats.n
    return float(np.finfo(np.float64).eps * (second / stats.std() ** 2).sum())


def statistics_suffice(stats: GramStats) -> bool:
    """Whether `stats.standardised()` is as good as the rows' (see `standardised_problem`)."""
    return stats.n - 1 >= stats.d and cancellation_error(stats) <= CANCELLATION_TOL


def standardised_problem(stats: GramStats, rows: Callable[[], tuple[np.ndarray, np.ndarray]]) -> Standardised:
    """The standardised problem of the rows that `stats` sums, from the statistics alone when that is
    accurate, otherwise from the rows (`standardised_from_rows`, a second pass over the data).

    The statistics suffice when there are more rows than neurons (n − 1 ≥ d: the centred Gram may be
    full rank, so no null space of rounding noise) and `cancellation_error(stats)` is below
    `CANCELLATION_TOL`, a hundredth of the smallest ridge the GCV grid tries (λ = 1e-7·n). `rows` is
    called only in the other case and returns `(x, y)`."""
    if statistics_suffice(stats):
        return stats.standardised()
    x, y = rows()
    return standardised_from_rows(x, y, stats.num_classes)
