"""Ridge probes solved in Gram space, with λ chosen by generalised cross-validation (GCV) or on a
held-out validation split.

With standardised, centred training features `Z` (n × d), `G = ZᵀZ` and centred one-hot targets
`Y_c` with `B = ZᵀY_c`, the one-vs-rest ridge probe on the neurons `S` is
`W_S = (G[S,S] + λI)⁻¹ B[S]`: no pass over the data per subset. Predictions are
`argmax(z_S W_S + prior)` (the intercept of a centred-target regression is the class prior).

**GCV** (the default; Golub, Heath & Wahba 1979) uses every training row and no validation split.
From `G[S,S] = V diag(e) Vᵀ` and `c_j = (VᵀB)_j`, for every λ of a dense log grid:

    RSS(λ) = ‖Y_c‖² − Σ_j ‖c_j‖²·(2/(e_j+λ) − e_j/(e_j+λ)²)
    tr H(λ) = 1 + Σ_j e_j/(e_j+λ)            (the 1 is the intercept)
    GCV(λ)  = n·RSS(λ) / (n − tr H(λ))²

and `W = V diag(1/(e+λ)) VᵀB` at the minimising λ. The centred Gram has rank ≤ min(k, n − 1): when
n ≤ k the eigenvalues beyond that rank are rounding noise (they can be negative) and would make RSS
negative and `tr H` exceed n. So only the top `min(k, n − 1)` eigenvalues are kept (the sample-space
spectrum: the nonzero eigenvalues of `Z_S Z_Sᵀ`), the rest and their `c_j` are dropped (the
minimum-norm solution), eigenvalues are clipped at zero, and a λ with `n − tr H < 1/2` or a
negative RSS scores +∞. Exact ties go to the larger λ.

Each subset gets its own GCV optimum on the grid, seeds of one fraction included (`probe_group`:
one spectrum per subset; reusing the first seed's λ for the others would rank seeds by GCV scores
taken away from their own optimum). The seeds of a group share the test-prediction product.

**On the CPU** (`RidgeProber.lapack`, the default there) the same numbers come from scipy's LAPACK,
which is fast on Intel and AMD alike (torch's MKL `eigh` is 1.7× slower than OpenBLAS on AMD EPYC):
from k ≥ `TRIDIAGONAL_MIN_K`, each subset's GCV curve from one tridiagonal reduction
`G = Q T Qᵀ` (`gcv_tridiagonal`: half an eigendecomposition's flops). On other devices (a GPU)
torch's `eigh`. A group's test predictions are one product with the test matrix when its subsets
cover half the layer (`_predict`).

**Validation** (`lambda_select = "val"`): one batched Cholesky solves a 7-value grid, λ is the one
with the best validation accuracy (ties to the larger λ); the score is that accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import torch

from redundancy.sources.stats import Standardised

# λ = α·n: the standardised Gram has diagonal n, so α is scale-free.
DEFAULT_ALPHAS: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # validation selection
GCV_ALPHAS: tuple[float, ...] = tuple(10.0 ** (e / 2) for e in range(-14, 11))  # 1e-7 … 1e5, 25 half-decades
_EDGE_TOL = 1e-4  # the edge counts only when it beats its neighbour by more than this (relative)


@dataclass
class ProbeResult:
    accuracy: float
    per_class_accuracy: np.ndarray  # (C,)
    lam: float | None
    correct: np.ndarray | None = None  # (n_test,) bool: per-sample correctness, for the bootstrap
    score: float | None = None  # training-side selection score: GCV (lower is better) or val accuracy
    lam_at_edge: bool = False  # GCV still falling at the grid's edge: the grid may be too narrow
    query_gini: float | None = None  # retrieval: the Gini of the per-query scores (`correct`)


def per_class_accuracy(pred: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    correct = np.bincount(y, weights=(pred == y).astype(np.float64), minlength=num_classes)
    counts = np.bincount(y, minlength=num_classes)
    return correct / np.maximum(counts, 1)


def gcv_curve(
    evals: np.ndarray, proj_sq: np.ndarray, y_sq: float, n: int, lambdas: np.ndarray
) -> np.ndarray:
    """GCV(λ) for every λ from the spectrum `e` and `‖c_j‖²` (both already rank-truncated, e ≥ 0)."""
    e = np.clip(np.asarray(evals, dtype=np.float64), 0.0, None)[None, :]
    lam = np.asarray(lambdas, dtype=np.float64)[:, None]
    inv = 1.0 / (e + lam)
    rss = y_sq - (proj_sq[None, :] * (2.0 * inv - e * inv * inv)).sum(1)
    dof = n - (1.0 + (e * inv).sum(1))
    return gcv_scores(rss, dof, n)


def gcv_scores(rss: np.ndarray, dof: np.ndarray, n: int) -> np.ndarray:
    """`n·RSS / dof²`, +∞ where `dof < 1/2` or `RSS < 0` (see the module docstring)."""
    rss, dof = np.asarray(rss, dtype=np.float64), np.asarray(dof, dtype=np.float64)
    out = np.full(rss.shape, np.inf)
    ok = (dof >= 0.5) & (rss >= 0.0)
    out[ok] = n * rss[ok] / dof[ok] ** 2
    return out


def pick_lambda(scores: np.ndarray) -> tuple[int, bool]:
    """Index of the smallest score (exact ties: the larger λ) and whether it is a genuine grid edge."""
    best = int(np.flatnonzero(scores == scores.min()).max())
    last = len(scores) - 1
    neighbour = 1 if best == 0 else last - 1
    edge = best in (0, last) and bool(scores[best] < (1.0 - _EDGE_TOL) * scores[neighbour])
    return best, edge


def gcv_slow(z: np.ndarray, y_onehot: np.ndarray, lam: float) -> float:
    """GCV of the ridge probe with intercept the slow, obvious way: the n × n hat matrix in sample space."""
    z = np.asarray(z, dtype=np.float64)
    n = z.shape[0]
    zc = z - z.mean(0)
    hat = np.full((n, n), 1.0 / n) + zc @ np.linalg.solve(zc.T @ zc + lam * np.eye(z.shape[1]), zc.T)
    resid = y_onehot - hat @ y_onehot
    return float(n * (resid**2).sum() / (n - np.trace(hat)) ** 2)


class RidgeProber:
    """Holds the standardised problem on a device and probes subsets.

    `select="gcv"`: λ by GCV on the training rows of `problem` (`x_val`, `y_val` are not used and may
    be None). `select="val"`: λ by accuracy on `x_val`, `y_val`.
    """

    def __init__(
        self,
        problem: Standardised,
        x_val: np.ndarray | None,
        y_val: np.ndarray | None,
        x_test: np.ndarray,
        y_test: np.ndarray,
        alphas: tuple[float, ...] | None = None,
        device: str | torch.device = "cpu",
        diagonal: bool = False,
        select: str = "val",
    ) -> None:
        if select not in ("gcv", "val"):
            raise ValueError(f"select must be 'gcv' or 'val', not {select!r}")
        self.device = torch.device(device)
        self.diagonal, self.select = diagonal, select
        # on the CPU: scipy LAPACK (GCV λ from a tridiagonal reduction, Cholesky + triangular inverse)
        self.lapack = self.device.type == "cpu"
        self.num_classes = int(problem.prior.shape[0])
        self.n = int(problem.n)
        self.y_sq = float(problem.n * (1.0 - (problem.prior**2).sum()))  # ‖Y_c‖² of one-hot targets
        dev = {"device": self.device, "dtype": torch.float64}
        self.gram = torch.as_tensor(problem.gram, **dev)
        self.targets = torch.as_tensor(problem.targets, **dev)
        self.prior = torch.as_tensor(problem.prior, **dev)
        # neuron-major (d × n) so that a subset's rows are contiguous gathers
        self.zt_test = torch.as_tensor(problem.transform(x_test).T.copy(), **dev)
        self.y_test = np.asarray(y_test, dtype=np.int64)
        if select == "val":
            if x_val is None or y_val is None:
                raise ValueError("validation selection needs x_val and y_val")
            self.zt_val = torch.as_tensor(problem.transform(x_val).T.copy(), **dev)
            self.y_val = torch.as_tensor(np.asarray(y_val), device=self.device, dtype=torch.long)
        alphas = alphas or (GCV_ALPHAS if select == "gcv" else DEFAULT_ALPHAS)
        self.lambdas = torch.as_tensor([a * problem.n for a in alphas], **dev)

    # Linear algebra -----------------------------------------------------------------------------

    def _block(self, subset: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(subset, device=self.device, dtype=torch.long)
        return idx, self.gram[idx[:, None], idx], self.targets[idx]

    def weights(self, subset: np.ndarray, lam: float) -> np.ndarray:
        """`(G[S,S] + λI)⁻¹ B[S]` by a direct solve (used for checks and export)."""
        _, g, b = self._block(subset)
        eye = torch.eye(len(subset), dtype=g.dtype, device=self.device)
        return torch.linalg.solve(g + lam * eye, b).cpu().numpy()

    def _solve(self, g: torch.Tensor, b: torch.Tensor, lams: torch.Tensor) -> torch.Tensor:
        """`(g + λI)⁻¹ b` for every λ at once: (L, k, C). Batched Cholesky (g is PSD, λ > 0); a
        diagonal g (principal components) is solved elementwise."""
        if self.diagonal:
            return b[None] / (torch.diagonal(g)[None, :, None] + lams[:, None, None])
        shifted = g.expand(len(lams), *g.shape).clone()
        shifted.diagonal(dim1=-2, dim2=-1).add_(lams[:, None])
        chol = torch.linalg.cholesky(shifted)
        return torch.cholesky_solve(b.expand(len(lams), *b.shape), chol)

    def _spectrum(self, g: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eigenvalues (clipped, beyond rank min(k, n − 1) zeroed), eigenvectors, and `c = VᵀB`."""
        if self.diagonal:
            e, v = torch.diagonal(g).clone(), None
            c = b
        else:
            e, v = psd_eigh(g)
            c = v.T @ b
        e = e.clamp(min=0.0)
        rank = min(len(e), self.n - 1)
        if rank < len(e):  # keep the top `rank` (eigh is ascending; diagonal: by value)
            drop = torch.argsort(e)[: len(e) - rank]
            e[drop] = 0.0
            c = c.clone()
            c[drop] = 0.0
        return e, v, c

    def _gcv_eig(self, g: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, float, float, bool]:
        """Weights at the GCV λ from one eigendecomposition (on the CPU, from k ≥ `TRIDIAGONAL_MIN_K`,
        one tridiagonal reduction: `gcv_tridiagonal`); (w, λ, GCV(λ), at_edge)."""
        lams = self.lambdas.cpu().numpy()
        if self.lapack and not self.diagonal and g.shape[0] >= TRIDIAGONAL_MIN_K:
            fast = gcv_tridiagonal(g.numpy(), b.numpy(), self.y_sq, self.n, lams)
            if fast is not None:
                curve, w_np = fast
                best, edge = pick_lambda(curve)
                return torch.from_numpy(w_np), float(lams[best]), float(curve[best]), edge
        e, v, c = self._spectrum(g, b)
        curve = gcv_curve(e.cpu().numpy(), (c**2).sum(1).cpu().numpy(), self.y_sq, self.n, lams)
        best, edge = pick_lambda(curve)
        w_eig = c / (e + lams[best])[:, None]
        w = w_eig if v is None else v @ w_eig
        return w, float(lams[best]), float(curve[best]), edge

    def _val_select(self, idx: torch.Tensor, g: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, float, float]:
        w_all = self._solve(g, b, self.lambdas)  # (L, k, C)
        scores = self.zt_val[idx].T @ w_all + self.prior  # (L, n_val, C)
        acc = (scores.argmax(-1) == self.y_val).double().mean(-1)
        best = int(torch.nonzero(acc == acc.max()).max())  # ties go to the larger (more regularised) λ
        return w_all[best], float(self.lambdas[best]), float(acc[best])

    # Probing ------------------------------------------------------------------------------------

    def _predict(self, idxs: list[torch.Tensor], ws: list[torch.Tensor]) -> list[np.ndarray]:
        """Test predictions `argmax(z_S W_S + prior)` of several probes. When the subsets cover at
        least half the layer together, one product with the whole test matrix: each W_S scattered
        into the rows S of a zero (d × C) block (the other neurons add exact zeros), which reads the
        test features once instead of copying k rows per subset; otherwise a gather per subset."""
        c = self.num_classes
        if sum(len(i) for i in idxs) * 2 < self.zt_test.shape[0]:
            return [(self.zt_test[i].T @ w + self.prior).argmax(1).cpu().numpy() for i, w in zip(idxs, ws, strict=True)]
        full = torch.zeros((self.zt_test.shape[0], c * len(ws)), dtype=ws[0].dtype, device=self.device)
        for j, (i, w) in enumerate(zip(idxs, ws, strict=True)):
            full[i, j * c : (j + 1) * c] = w
        scores = (full.T @ self.zt_test).T  # (n_test, m·C)
        return [(scores[:, j * c : (j + 1) * c] + self.prior).argmax(1).cpu().numpy() for j in range(len(ws))]

    def _result(self, pred: np.ndarray, lam: float, score: float | None, edge: bool = False) -> ProbeResult:
        return ProbeResult(
            accuracy=float((pred == self.y_test).mean()),
            per_class_accuracy=per_class_accuracy(pred, self.y_test, self.num_classes),
            lam=float(lam), correct=pred == self.y_test, score=score, lam_at_edge=edge,
        )

    def _score_test(self, idx: torch.Tensor, w: torch.Tensor, lam: float, score: float | None,
                    edge: bool = False) -> ProbeResult:
        return self._result(self._predict([idx], [w])[0], lam, score, edge)

    def probe(self, subset: np.ndarray, lam: float | None = None) -> ProbeResult:
        """Fit on the subset's columns, choose λ (unless given) by the configured rule, score on test."""
        idx, g, b = self._block(subset)
        if lam is not None:
            w = self._solve(g, b, torch.as_tensor([lam], dtype=g.dtype, device=g.device))[0]
            return self._score_test(idx, w, lam, None)
        if self.select == "val":
            w, lam, acc = self._val_select(idx, g, b)
            return self._score_test(idx, w, lam, acc)
        w, lam, score, edge = self._gcv_eig(g, b)
        return self._score_test(idx, w, lam, score, edge)

    def probe_group(self, subsets: list[np.ndarray]) -> list[ProbeResult]:
        """Probe same-size subsets (a fraction's seeds), each at its own λ (GCV: its own optimum on the
        grid; validation: its own best), the test predictions of a GCV group in one product."""
        if self.select == "val" or not subsets:
            return [self.probe(s) for s in subsets]
        idxs, ws, chosen = [], [], []
        for s in subsets:
            idx, g, b = self._block(s)
            w, lam, score, edge = self._gcv_eig(g, b)
            idxs.append(idx)
            ws.append(w)
            chosen.append((lam, score, edge))
        return [self._result(p, *c) for p, c in zip(self._predict(idxs, ws), chosen, strict=True)]


# The CPU fast path for λ by GCV ------------------------------------------------------------------

TRIDIAGONAL_MIN_K = 128  # below this an eigendecomposition is as cheap
REFLECTOR_BLOCK = 64


@dataclass
class Tridiagonal:
    """`G = Q T Qᵀ` (LAPACK `dsytrd`, lower storage): T's diagonal `d` and off-diagonal `e`, and Q as
    Householder reflectors `H_i = I − τ_i v_i v_iᵀ` (`v_i` in column i of `reflectors`, below the
    subdiagonal, with an implicit 1 on it)."""

    d: np.ndarray
    e: np.ndarray
    reflectors: np.ndarray
    tau: np.ndarray
    _wy: list[tuple[int, np.ndarray, np.ndarray]] | None = None

    @classmethod
    def of(cls, g: np.ndarray) -> Tridiagonal:
        k = g.shape[0]
        lwork = int(sla.lapack.dsytrd_lwork(k, lower=1)[0])
        c, d, e, tau, info = sla.lapack.dsytrd(np.asfortranarray(g), lower=1, lwork=max(lwork, 1))
        if info != 0:
            raise np.linalg.LinAlgError(f"dsytrd failed (info={info})")
        return cls(d=d, e=e, reflectors=c, tau=tau)

    def _blocks(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """The reflectors in blocks of `REFLECTOR_BLOCK`, each as `H_a ⋯ H_b = I − V Tb Vᵀ` (compact WY;
        `Tb⁻¹ = striu(VᵀV) + diag(1/τ)`, Puglisi 1992). Returns `(row offset, V, Tb⁻¹)`; V's rows start
        at the offset (the rows above are zero in every v of the block)."""
        if self._wy is None:
            self._wy = []
            m = len(self.tau)
            for a in range(0, m, REFLECTOR_BLOCK):
                b = min(m, a + REFLECTOR_BLOCK)
                v = np.tril(self.reflectors[a + 1 :, a:b], -1)
                v[np.arange(b - a), np.arange(b - a)] = 1.0
                tau = self.tau[a:b]
                zero = tau == 0.0  # H = I: a zero v with any finite diagonal leaves it out
                v[:, zero] = 0.0
                t_inv = np.triu(v.T @ v, 1)
                t_inv[np.diag_indices(b - a)] = np.where(zero, 1.0, 1.0 / np.where(zero, 1.0, tau))
                self._wy.append((a + 1, v, t_inv))
        return self._wy

    def qt(self, x: np.ndarray) -> np.ndarray:
        """`Qᵀ x` (Qᵀ = H_{k−1} ⋯ H_1; each block's transpose `I − V Tbᵀ Vᵀ`, first block first)."""
        out = np.array(x, dtype=np.float64, copy=True)
        for a, v, t_inv in self._blocks():
            out[a:] -= v @ sla.solve_triangular(t_inv, v.T @ out[a:], trans="T", check_finite=False)
        return out

    def q(self, x: np.ndarray) -> np.ndarray:
        """`Q x` (Q = H_1 ⋯ H_{k−1}; each block `I − V Tb Vᵀ`, last block first)."""
        out = np.array(x, dtype=np.float64, copy=True)
        for a, v, t_inv in reversed(self._blocks()):
            out[a:] -= v @ sla.solve_triangular(t_inv, v.T @ out[a:], check_finite=False)
        return out

    def solve(self, rhs: np.ndarray, lam: float) -> np.ndarray:
        """`(T + λI)⁻¹ rhs` for T + λI positive definite: a banded Cholesky, O(k·C)."""
        band = np.zeros((2, len(self.d)))
        band[0] = self.d + lam
        band[1, :-1] = self.e
        return sla.solveh_banded(band, rhs, lower=True, check_finite=False)


def psd_eigh(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`torch.linalg.eigh` of a symmetric Gram, ascending, made robust where LAPACK is not.

    A row (and column) of G that is all zeros is a constant neuron after standardisation: `e_i`
    is then an eigenvector with eigenvalue 0, exactly. Those split off and only the rest of G is
    decomposed, which is exact and cheaper. It matters: MKL's divide-and-conquer `syevd` failed to
    converge on a 1,280-neuron Gram of which 1,104 neurons were constant (random-weight Lite0 on
    32 px digits) while the 176 × 176 remainder decomposed at once. Should LAPACK still fail, the
    QR-iteration driver (`scipy.linalg.eigh(driver="ev")`, slower, always converges in practice)
    answers instead."""
    live = (g != 0).any(dim=1)
    if bool(live.all()):
        return _eigh(g)
    k, idx = g.shape[0], torch.nonzero(live).squeeze(1)
    e_live, v_live = _eigh(g[idx][:, idx]) if len(idx) else (g.new_zeros(0), g.new_zeros(0, 0))
    dead = torch.nonzero(~live).squeeze(1)
    e = torch.cat([g.new_zeros(len(dead)), e_live])
    v = g.new_zeros(k, k)
    v[dead, torch.arange(len(dead), device=g.device)] = 1.0
    v[idx[:, None], len(dead) + torch.arange(len(idx), device=g.device)[None, :]] = v_live
    order = torch.argsort(e, stable=True)
    return e[order], v[:, order]


def _eigh(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        return torch.linalg.eigh(g)
    except torch.linalg.LinAlgError:
        e, v = sla.eigh(g.cpu().numpy(), driver="ev", check_finite=False)
        return torch.from_numpy(e).to(g), torch.from_numpy(v).to(g)


def gcv_tridiagonal(
    g: np.ndarray, b: np.ndarray, y_sq: float, n: int, lambdas: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The GCV curve over `lambdas` and `W = (G + λI)⁻¹ B` at its minimum, from one tridiagonal
    reduction instead of an eigendecomposition (half the flops, and LAPACK's `dsytrd` through
    scipy, which is fast on Intel and AMD alike). With `q = QᵀB` and `w(λ) = (T + λI)⁻¹ q`:

        RSS(λ) = ‖Y_c‖² − tr(qᵀw) − λ‖w‖²        tr H(λ) = 1 + Σ_j e_j/(e_j+λ)

    (`e` the eigenvalues of T, hence of G, from `eigvalsh_tridiagonal`, O(k²)): the same numbers as
    `gcv_curve` from the spectrum. Returns `(curve, W at the chosen λ)`, or None where the spectrum
    needs the rank truncation or clipping of the eigendecomposition path (n − 1 < k, or an
    eigenvalue ≤ 0): the caller then takes that path."""
    k = g.shape[0]
    if n - 1 < k:
        return None
    tri = Tridiagonal.of(g)
    evals = sla.eigvalsh_tridiagonal(tri.d, tri.e, check_finite=False)
    if evals.min() <= 0.0:
        return None
    q = tri.qt(b)
    rss, solutions = np.empty(len(lambdas)), []
    for i, lam in enumerate(lambdas):
        w = tri.solve(q, float(lam))
        rss[i] = y_sq - float((q * w).sum()) - float(lam) * float((w * w).sum())
        solutions.append(w)
    dof = n - (1.0 + (evals[None, :] / (evals[None, :] + lambdas[:, None])).sum(1))
    curve = gcv_scores(rss, dof, n)
    best, _ = pick_lambda(curve)
    return curve, tri.q(solutions[best])
