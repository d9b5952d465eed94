"""Baselines beside the random subsets: top-k PCA components, the first k neurons, a random projection.

Each baseline is a k-dimensional linear map of the layer, `P = X R` with `R ∈ R^{d×k}`, probed by
the same ridge probe as the random subsets (standardised features, λ by the same rule: GCV or validation). Its
sufficient statistics follow from the layer's without a pass over the data: `Σp = Rᵀ Σx`,
`PᵀP = Rᵀ (XᵀX) R`, per-class sums `· R`. Its linear CKA with the whole layer, on centred raw
train features with `G = X_cᵀ X_c`, is `‖RᵀG‖²_F / (‖RᵀGR‖_F ‖G‖_F)`.

- **pca**: the top-k principal components of the *standardised* train features (eigenvectors `V` of
  the standardised Gram `G_s = V Λ Vᵀ`), probed in their own scale, not whitened: the ridge probe on
  `Z V_k` is `(Λ_k + λI)⁻¹ V_kᵀ B`, so PCA and the random subsets share one penalty geometry and at
  k = d PCA equals the full-layer probe. k is capped at the Gram's numerical rank.
- **first_k**: `R` selects neurons `0..k−1` (for nested / Matryoshka-trained layers).
- **random_projection**: Gaussian `R` with entries `N(0, 1/k)`, seeded; on raw features, or on
  standardised ones with `standardise=True`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from redundancy.probing.cka import GramCKA
from redundancy.probing.ridge import ProbeResult, RidgeProber
from redundancy.sources.stats import GramStats, Standardised


@dataclass
class BaselineResult(ProbeResult):
    """A ridge `ProbeResult` on a baseline representation, with its CKA and per-sample correctness."""

    kind: str = ""
    k: int = 0  # dimensions actually probed (PCA: capped at the Gram's rank)
    cka: float = float("nan")  # linear CKA with the whole layer, centred raw train features
    correct: np.ndarray | None = None  # (n_test,) bool


def random_projection_matrix(d: int, k: int, seed: int, master_seed: int = 0) -> np.ndarray:
    """A seeded Gaussian `d × k` matrix with entries `N(0, 1/k)`."""
    rng = np.random.default_rng([master_seed, d, k, seed, 0x5250])  # "RP": distinct from subset draws
    return rng.standard_normal((d, k)) / np.sqrt(k)


def projected_stats(stats: GramStats, r: np.ndarray) -> GramStats:
    """The statistics of `X R` from those of `X`: no pass over the data."""
    r = np.asarray(r, dtype=np.float64)
    g = r.T @ stats.gram @ r
    return GramStats(
        n=stats.n,
        total=stats.total @ r,
        gram=(g + g.T) / 2,
        class_sums=stats.class_sums @ r,
        class_counts=stats.class_counts.copy(),
    )


def projection_cka(centred_gram: np.ndarray, r: np.ndarray) -> float:
    """Linear CKA between `X_c R` and `X_c` from `G = X_cᵀ X_c`: `‖RᵀG‖²/(‖RᵀGR‖ ‖G‖)`; NaN when
    either side has no variance (undefined, not 0)."""
    rg = np.asarray(r, dtype=np.float64).T @ centred_gram
    self_norm = np.linalg.norm(rg @ r)
    full_norm = np.linalg.norm(centred_gram)
    if self_norm == 0.0 or full_norm == 0.0:
        return float("nan")
    return float((rg**2).sum() / (self_norm * full_norm))


class Baselines:
    """Ridge probes of the three baselines for one layer; the PCA eigendecomposition is done once.

    Parameters
    ----------
    stats
        Train-split statistics of the layer.
    x_val, y_val, x_test, y_test
        Raw (un-standardised) features and labels of the validation (λ choice) and test splits;
        `x_val`, `y_val` may be None with `select="gcv"` (λ by GCV on the rows behind `stats`).
    select
        `"gcv"` or `"val"`, as for `RidgeProber`.
    """

    def __init__(
        self,
        stats: GramStats,
        x_val: np.ndarray | None,
        y_val: np.ndarray | None,
        x_test: np.ndarray,
        y_test: np.ndarray,
        alphas: tuple[float, ...] | None = None,
        device: str | torch.device = "cpu",
        select: str = "val",
    ) -> None:
        self.stats = stats
        self.select = select
        self.x_val = None if x_val is None else np.asarray(x_val, dtype=np.float64)
        self.x_test = np.asarray(x_test, dtype=np.float64)
        self.y_val, self.y_test = y_val, np.asarray(y_test)
        self.alphas, self.device = alphas, device
        self.centred_gram = stats.centred_gram()
        self._pca: tuple[np.ndarray, np.ndarray, RidgeProber] | None = None
        self._layer_prober: RidgeProber | None = None
        self._layer_cka: GramCKA | None = None

    @property
    def d(self) -> int:
        return self.stats.d

    def _pca_setup(self) -> tuple[np.ndarray, np.ndarray, RidgeProber]:
        """Eigenvalues (descending), eigenvectors of the standardised Gram, and a ridge prober whose
        neurons are the principal-component scores (already centred and in their own scale)."""
        if self._pca is None:
            p = self.stats.standardised()
            evals, evecs = np.linalg.eigh(p.gram)
            evals, evecs = evals[::-1].copy(), evecs[:, ::-1].copy()
            rotated = Standardised(
                mean=np.zeros(self.d), std=np.ones(self.d), gram=np.diag(np.clip(evals, 0.0, None)),
                targets=evecs.T @ p.targets, prior=p.prior, n=p.n,
            )
            prober = RidgeProber(
                rotated, self._rotate(p, evecs), self.y_val, p.transform(self.x_test) @ evecs,
                self.y_test, alphas=self.alphas, device=self.device, diagonal=True, select=self.select,
            )
            self._pca = (evals, evecs, prober)
        return self._pca

    def _rotate(self, p: Standardised, evecs: np.ndarray) -> np.ndarray | None:
        return None if self.x_val is None else p.transform(self.x_val) @ evecs

    def _val(self, r: np.ndarray | None = None) -> np.ndarray | None:
        if self.x_val is None:
            return None
        return self.x_val if r is None else self.x_val @ r

    def pca_components(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues (descending) and eigenvectors (columns) of the standardised train Gram."""
        evals, evecs, _ = self._pca_setup()
        return evals, evecs

    def pca_rank(self) -> int:
        """Numerical rank of the standardised Gram: eigenvalues above `max(e)·d·eps`."""
        evals, _ = self.pca_components()
        tol = max(float(evals[0]), 0.0) * self.d * np.finfo(np.float64).eps
        return int((evals > tol).sum())

    def _probe_projection(self, kind: str, r: np.ndarray) -> BaselineResult:
        k = r.shape[1]
        prober = RidgeProber(
            projected_stats(self.stats, r).standardised(),
            self._val(r), self.y_val, self.x_test @ r, self.y_test,
            alphas=self.alphas, device=self.device, select=self.select,
        )
        subset = np.arange(k)
        res = prober.probe(subset)
        return BaselineResult(
            accuracy=res.accuracy, per_class_accuracy=res.per_class_accuracy, lam=res.lam,
            score=res.score, lam_at_edge=res.lam_at_edge, kind=kind, k=k,
            cka=projection_cka(self.centred_gram, r), correct=res.correct,
        )

    def pca(self, k: int) -> BaselineResult:
        """Ridge probe on the top-k principal components of the standardised train features."""
        k = max(1, min(int(k), self.pca_rank()))
        _, evecs, prober = self._pca_setup()
        res = prober.probe(np.arange(k))
        # the component scores are X_c R with R = diag(1/σ) V_k: CKA with the layer from the Gram
        r = evecs[:, :k] / self.stats.std()[:, None]
        return BaselineResult(
            accuracy=res.accuracy, per_class_accuracy=res.per_class_accuracy, lam=res.lam,
            score=res.score, lam_at_edge=res.lam_at_edge, kind="pca", k=k,
            cka=projection_cka(self.centred_gram, r), correct=res.correct,
        )

    def random_projection(
        self, k: int, seed: int, master_seed: int = 0, standardise: bool = False
    ) -> BaselineResult:
        """Ridge probe on a seeded Gaussian projection to k dimensions (of standardised features if asked)."""
        r = random_projection_matrix(self.d, int(k), seed, master_seed)
        if standardise:
            r = r / self.stats.std()[:, None]
        return self._probe_projection("random_projection", r)

    def first_k(self, k: int) -> BaselineResult:
        """Ridge probe on neurons `0..k−1`: the same probe as a random subset, on a nested one."""
        if self._layer_prober is None:
            self._layer_prober = RidgeProber(
                self.stats.standardised(), self._val(), self.y_val, self.x_test, self.y_test,
                alphas=self.alphas, device=self.device, select=self.select,
            )
            self._layer_cka = GramCKA(self.centred_gram, device=self.device)
        assert self._layer_cka is not None
        subset = np.arange(min(int(k), self.d))
        res = self._layer_prober.probe(subset)
        return BaselineResult(
            accuracy=res.accuracy, per_class_accuracy=res.per_class_accuracy, lam=res.lam,
            score=res.score, lam_at_edge=res.lam_at_edge, kind="first_k", k=len(subset),
            cka=self._layer_cka(subset), correct=res.correct,
        )
