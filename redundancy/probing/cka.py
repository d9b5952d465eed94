"""Linear CKA between neuron subsets of one layer: what each number of a curve point measures.

With centred features `X` and `G = XᵀX`, linear CKA is
`CKA(X_S, X_T) = ‖X_Sᵀ X_T‖²_F / (‖X_Sᵀ X_S‖_F ‖X_Tᵀ X_T‖_F)` (the biased, plain-HSIC estimator of
Kornblith et al. 2019), always on centred raw features, never standardised ones.

- `cka` (`GramCKA`): **part versus whole**, biased, between the subset S and the whole layer on the
  rows the probe was fitted on (train + validation under GCV, the fit split under `val`), from the
  centred Gram by indexing: `‖G[S,:]‖²_F / (‖G[S,S]‖_F ‖G‖_F)`. The paper reports no such number.
- `cka_pair` (`FeatureCKA.subset_subset`): **subset versus subset**, two independent uniform draws
  of k neurons (`independent_subset_pair`), on test images chosen by `cka_protocol` (`cka_rows`):
  `standard`: every stored test image, with the configured estimator (biased, or debiased:
  unbiased HSIC, Song et al. 2012; Nguyen et al. 2021); `paper`: biased on the last batch of
  `PAPER_BATCH` = 100 test images, which is what the paper's figures are: its notebook computes
  biased linear CKA batch by batch over the test set and its metric keeps only the last batch's value
  (then the mean over seed pairs). At n = 100 the biased estimator is inflated: expect the `paper`
  numbers above the `standard` ones at small k.
- `cka_debiased` (`FeatureCKA.part_whole`, only with `cka = "debiased"`): part versus whole,
  debiased, on every stored test image.
"""

from __future__ import annotations

import numpy as np
import torch

PAPER_BATCH = 100  # the paper's evaluation batch: its CKA is that of the last batch of test images


def cka_rows(x_test: np.ndarray, protocol: str) -> np.ndarray:
    """The test rows subset-versus-subset CKA is measured on: all of them (`standard`), or the last
    batch of `PAPER_BATCH` (`paper`: the last 100 in order, all of them when there are fewer; the
    paper's 10,000 test images are a multiple of 100, so its last batch is its last 100 images)."""
    if protocol == "standard":
        return x_test
    if protocol == "paper":
        return x_test[max(0, len(x_test) - PAPER_BATCH):]
    raise ValueError(f"cka_protocol must be 'standard' or 'paper', not {protocol!r}")


class GramCKA:
    """Part-versus-whole linear CKA for many subsets of one layer; NaN when undefined (no variance)."""

    def __init__(self, centred_gram: np.ndarray, device: str | torch.device = "cpu") -> None:
        self.gram = torch.as_tensor(centred_gram, dtype=torch.float64, device=device)
        self.norm_full = float(torch.linalg.matrix_norm(self.gram))
        self.device = self.gram.device

    def __call__(self, subset: np.ndarray) -> float:
        idx = torch.as_tensor(subset, device=self.device, dtype=torch.long)
        rows = self.gram[idx]
        cross = float((rows**2).sum())
        self_norm = float(torch.linalg.matrix_norm(rows[:, idx]))
        if self_norm == 0.0 or self.norm_full == 0.0:
            return float("nan")  # a subset with no variance (e.g. only dead neurons): undefined, not 0
        return cross / (self_norm * self.norm_full)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between two feature matrices over the same samples (rows), via sample Grams.

    The slow, obvious computation: centre the n × n kernels and take the normalised HSIC. NaN when a
    side has no variance (CKA is undefined there).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x, y = x - x.mean(0), y - y.mean(0)  # centring the features centres the kernels
    k, l = x @ x.T, y @ y.T
    den = float((k * k).sum() * (l * l).sum())
    return float((k * l).sum() / np.sqrt(den)) if den > 0.0 else float("nan")


# Debiased CKA and subset-versus-subset CKA ----------------------------------------------------------
#
# The unbiased HSIC estimator (Song et al. 2012), used for debiased CKA by Nguyen et al. (2021), on
# the n × n linear kernels `K = XXᵀ`, `L = YYᵀ` of centred features, with zeroed diagonals K̃, L̃:
# `HSIC_u = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3))`.
# In feature space (Kornblith et al.'s identity) with `r_X = rowwise ‖x_i‖²`:
# `n(n−3)·HSIC_u = ‖XᵀY‖² − n/(n−2)·r_X·r_Y + ‖X‖²‖Y‖²/((n−1)(n−2))`.
# For neuron subsets of one layer every term comes from two d × d matrices by indexing:
# `G = XᵀX` and `H = (X∘X)ᵀ(X∘X)` give `‖X_SᵀX_T‖² = ‖G[S,T]‖²`, `r_S·r_T = ΣH[S,T]`,
# `‖X_S‖² = Σ diag(G)[S]`.


def _unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:
    n = k.shape[0]
    k = k.copy()
    l = l.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    trace = float((k * l).sum())
    sums = float(k.sum()) * float(l.sum()) / ((n - 1) * (n - 2))
    cross = 2.0 / (n - 2) * float(k.sum(0) @ l.sum(1))
    return (trace + sums - cross) / (n * (n - 3))


def debiased_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Debiased linear CKA (unbiased HSIC) between two feature matrices over the same samples.

    The slow, obvious computation on n × n kernels of centred features; needs n ≥ 4. Unlike the
    biased estimator it can be slightly negative for unrelated features at small n. NaN when either
    self-HSIC is not positive (no variance, or an estimate below zero): the ratio is then meaningless,
    even when both are negative and their product is positive.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.shape[0]
    if n < 4:
        raise ValueError("debiased CKA needs at least 4 samples")
    x = x - x.mean(0)
    y = y - y.mean(0)
    k, l = x @ x.T, y @ y.T
    xy, xx, yy = _unbiased_hsic(k, l), _unbiased_hsic(k, k), _unbiased_hsic(l, l)
    return _ratio(xy, xx, yy)


def _ratio(xy: float, xx: float, yy: float) -> float:
    """`xy / √(xx·yy)`, NaN unless both self terms are positive (the sign case included)."""
    if not (xx > 0.0 and yy > 0.0):
        return float("nan")
    return float(xy / np.sqrt(xx * yy))


def independent_subset_pair(d: int, k: int, seed: int, master_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two independent uniform draws of `k` of `d` neurons (they may overlap), as the paper compares."""
    if k >= d:
        return np.arange(d), np.arange(d)
    rng = np.random.default_rng([master_seed, d, k, seed, 0x5353])  # "SS": distinct from probe subsets
    return np.sort(rng.choice(d, size=k, replace=False)), np.sort(rng.choice(d, size=k, replace=False))


class FeatureCKA:
    """Biased and debiased linear CKA between neuron subsets of one layer, on a sample matrix.

    Builds `G = XᵀX` and `H = (X∘X)ᵀ(X∘X)` of the centred features once (O(n·d²)); each CKA then
    costs O(|S|·|T|) by indexing. Meant for the stored test (or validation) features.
    """

    def __init__(self, x: np.ndarray, device: str | torch.device = "cpu") -> None:
        xt = torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device)
        self.n = int(xt.shape[0])
        if self.n < 4:
            raise ValueError("FeatureCKA needs at least 4 samples")
        xt = xt - xt.mean(0)
        sq = xt * xt
        self.device = xt.device
        self.gram = xt.T @ xt
        self.h = sq.T @ sq
        self.diag = torch.diagonal(self.gram).clone()
        self.d = int(self.gram.shape[0])

    def _idx(self, s: np.ndarray | None) -> torch.Tensor:
        if s is None:
            return torch.arange(self.d, device=self.device)
        return torch.as_tensor(np.asarray(s), dtype=torch.long, device=self.device)

    def _terms(self, s: torch.Tensor, t: torch.Tensor) -> tuple[float, float, float, float]:
        block = self.gram[s][:, t]
        return (
            float((block**2).sum()),
            float(self.h[s][:, t].sum()),
            float(self.diag[s].sum()),
            float(self.diag[t].sum()),
        )

    def _debias(self, xty: float, rr: float, nx: float, ny: float) -> float:
        n = self.n
        return xty - n / (n - 2) * rr + nx * ny / ((n - 1) * (n - 2))

    def pair(self, s: np.ndarray | None, t: np.ndarray | None, debiased: bool = False) -> float:
        """CKA between the neurons `s` and `t` (None: the whole layer); NaN when it is undefined
        (a side with no variance, e.g. only dead neurons, or a non-positive self-HSIC on either side)."""
        si, ti = self._idx(s), self._idx(t)
        xy, xs, ys = self._terms(si, ti), self._terms(si, si), self._terms(ti, ti)
        if debiased:
            return _ratio(self._debias(*xy), self._debias(*xs), self._debias(*ys))
        return _ratio(xy[0], xs[0], ys[0])

    def part_whole(self, s: np.ndarray, debiased: bool = False) -> float:
        """CKA between the subset `s` and the whole layer."""
        return self.pair(s, None, debiased)

    def subset_subset(self, k: int, seed: int, master_seed: int = 0, debiased: bool = False) -> float:
        """CKA between two independent random subsets of `k` neurons (the paper's analysis)."""
        s, t = independent_subset_pair(self.d, k, seed, master_seed)
        return self.pair(s, t, debiased)
