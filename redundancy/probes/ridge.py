"""Ridge probes solved in Gram space.

With standardised, centred training features `Z` (n × d), `G = ZᵀZ` and centred one-hot targets
`B = ZᵀY_c`, the one-vs-rest ridge probe on the neurons `S` is `W_S = (G[S,S] + λI)⁻¹ B[S]`: no pass
over the data per subset. One batched Cholesky factorisation solves it for every λ of a grid at once
(far cheaper than an eigendecomposition); λ is chosen on a held-out validation split (best accuracy,
ties to the larger λ).
Predictions are `argmax(z_S W_S + prior)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from redundancy.stats import Standardised

# λ = α·n: the standardised Gram has diagonal n, so α is scale-free.
DEFAULT_ALPHAS: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass
class ProbeResult:
    accuracy: float
    per_class_accuracy: np.ndarray  # (C,)
    lam: float | None
    correct: np.ndarray | None = None  # (n_test,) bool: per-sample correctness, for the bootstrap


def per_class_accuracy(pred: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    correct = np.bincount(y, weights=(pred == y).astype(np.float64), minlength=num_classes)
    counts = np.bincount(y, minlength=num_classes)
    return correct / np.maximum(counts, 1)


class RidgeProber:
    """Holds the standardised problem on a device and probes one subset at a time."""

    def __init__(
        self,
        problem: Standardised,
        x_val: np.ndarray,
        y_val: np.ndarray,
        x_test: np.ndarray,
        y_test: np.ndarray,
        alphas: tuple[float, ...] = DEFAULT_ALPHAS,
        device: str | torch.device = "cpu",
        diagonal: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.diagonal = diagonal
        self.num_classes = int(problem.prior.shape[0])
        dev = {"device": self.device, "dtype": torch.float64}
        self.gram = torch.as_tensor(problem.gram, **dev)
        self.targets = torch.as_tensor(problem.targets, **dev)
        self.prior = torch.as_tensor(problem.prior, **dev)
        # neuron-major (d × n) so that a subset's rows are contiguous gathers
        self.zt_val = torch.as_tensor(problem.transform(x_val).T.copy(), **dev)
        self.zt_test = torch.as_tensor(problem.transform(x_test).T.copy(), **dev)
        self.y_val = torch.as_tensor(np.asarray(y_val), device=self.device, dtype=torch.long)
        self.y_test = np.asarray(y_test, dtype=np.int64)
        self.lambdas = torch.as_tensor([a * problem.n for a in alphas], **dev)

    def weights(self, subset: np.ndarray, lam: float) -> np.ndarray:
        """`(G[S,S] + λI)⁻¹ B[S]` by a direct solve (used for checks and export)."""
        idx = torch.as_tensor(subset, device=self.device, dtype=torch.long)
        g = self.gram[idx][:, idx]
        eye = torch.eye(len(subset), dtype=g.dtype, device=self.device)
        return torch.linalg.solve(g + lam * eye, self.targets[idx]).cpu().numpy()

    def _solve(self, g: torch.Tensor, b: torch.Tensor, lams: torch.Tensor) -> torch.Tensor:
        """`(g + λI)⁻¹ b` for every λ at once: (L, k, C). Batched Cholesky (g is PSD, λ > 0); a
        diagonal g (principal components) is solved elementwise."""
        if self.diagonal:
            return b[None] / (torch.diagonal(g)[None, :, None] + lams[:, None, None])
        shifted = g.expand(len(lams), *g.shape).clone()
        shifted.diagonal(dim1=-2, dim2=-1).add_(lams[:, None])
        chol = torch.linalg.cholesky(shifted)
        return torch.cholesky_solve(b.expand(len(lams), *b.shape), chol)

    def probe(self, subset: np.ndarray, lam: float | None = None) -> ProbeResult:
        """Fit on the subset's columns, pick λ on validation (unless given), score on test."""
        idx = torch.as_tensor(subset, device=self.device, dtype=torch.long)
        g = self.gram[idx][:, idx]
        b = self.targets[idx]
        if lam is None:
            w_all = self._solve(g, b, self.lambdas)  # (L, k, C)
            scores = self.zt_val[idx].T @ w_all + self.prior  # (L, n_val, C)
            acc = (scores.argmax(-1) == self.y_val).double().mean(-1)
            best = int(torch.nonzero(acc == acc.max()).max())  # ties go to the larger (more regularised) λ
            lam, w = float(self.lambdas[best]), w_all[best]
        else:
            w = self._solve(g, b, torch.as_tensor([lam], dtype=g.dtype, device=g.device))[0]
        scores = self.zt_test[idx].T @ w + self.prior
        pred = scores.argmax(1).cpu().numpy()
        return ProbeResult(
            accuracy=float((pred == self.y_test).mean()),
            per_class_accuracy=per_class_accuracy(pred, self.y_test, self.num_classes),
            lam=float(lam),
            correct=pred == self.y_test,
        )
