"""Retrieval as the task: exact nearest-neighbour search in blocks, and the scores of a ranking.

**Protocol (label retrieval).** Every test item is a query, the train items (fit and validation
splits) are the corpus, and a corpus item is relevant to a query when it has the query's label. A
representation (a random subset of neurons, the first k, a projection `x ↦ Rᵀx`) is applied to
queries and corpus alike; with `similarity = "cosine"` each row is then L2-normalised (a zero row
stays zero), with `"dot"` not. The ranking of a query is the corpus ordered by similarity, highest
first, ties to the lower corpus index; only its top `K = min(10, corpus size)` is kept.

**Exact search in blocks** (`search`). The similarities of a block of `b_q` queries against a block
of `b_c` corpus rows are one matrix product on the device, `S = Q_b C_bᵀ`, with
`b_c = min(n_c, max(K, budget))` and `b_q = max(1, min(n_q, budget // b_c))`, so no score matrix
larger than `budget` elements (or one row of K) is ever formed. Each block keeps its `torch.topk`;
the running best K of a query block and the new block's K are merged by a stable sort on
(similarity descending, corpus index ascending). The block sizes do not change the result (a test
checks it), except for exactly equal similarities straddling a block's K-th place, which `topk`
breaks in its own order.

**Scores per query** `q`, with `rel_i ∈ {0, 1}` the relevance of its i-th result and `R_q` the
number of relevant corpus items (queries with `R_q = 0` have no defined score and are left out of
every mean, bootstrap and fairness vector):

- `ndcg@10` (binary gains): `DCG = Σ_{i=1..10} rel_i / log2(i + 1)`,
  `IDCG = Σ_{i=1..min(10, R_q)} 1 / log2(i + 1)`, score `DCG / IDCG`.
- `recall@10`: `Σ_{i=1..10} rel_i / R_q` (the textbook recall; at most `10 / R_q`).
- `map@10`: `AP@10 = Σ_{i=1..10} rel_i · P@i / min(10, R_q)` with `P@i = Σ_{j≤i} rel_j / i`, so a
  perfect top 10 scores 1 (pytrec_eval's `map_cut_10` divides by `R_q` instead).
- `top10_overlap`: `|top10(q) ∩ top10_full(q)| / K`, the share of the full layer's answers the cut
  representation still returns; needs no labels, so every query counts.

The task's score is the mean of the per-query scores. **Fairness** per curve point: its Gini is the
exact Gini of its per-query scores (`ProbeResult.query_gini`, `CurvePoint.query_gini`, by
`probing.inequality.gini`), and its fairness vector is the mean score of each decile of its queries
(the per-query scores sorted ascending and cut by `numpy.array_split` into 10 groups), so
`worst_class` is the worst decile's mean score (the lowest ⌈n/10⌉ queries; `Fairness.worst_decile_*`
names it). The per-query scores are what the paired bootstrap resamples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from redundancy.errors import DatasetFormatError
from redundancy.probing.inequality import gini
from redundancy.probing.ridge import ProbeResult

TOP = 10
DECILES = 10
DEFAULT_BUDGET = 1 << 24  # score-matrix elements per block: 64 MiB of float32
DECILE_NAMES: tuple[str, ...] = tuple(f"queries {10 * i}–{10 * (i + 1)}%" for i in range(DECILES))


def block_sizes(n_queries: int, n_corpus: int, k: int, budget: int = DEFAULT_BUDGET) -> tuple[int, int]:
    """`(b_q, b_c)`: query and corpus rows per block, `b_q · b_c ≤ max(budget, k)`."""
    if budget < 1:
        raise ValueError("budget must be at least 1")
    b_c = min(n_corpus, max(k, budget))
    b_q = max(1, min(n_queries, budget // max(b_c, 1)))
    return b_q, b_c


def _prepared(x: torch.Tensor, similarity: str) -> torch.Tensor:
    if similarity == "cosine":
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        return x / torch.where(norm > 0, norm, torch.ones_like(norm))
    if similarity == "dot":
        return x
    raise ValueError(f"similarity {similarity!r} is not 'cosine' or 'dot'")


def _merge(values: torch.Tensor, index: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The best k of each row by (value descending, index ascending)."""
    order = torch.sort(index, dim=1, stable=True).indices
    values, index = values.gather(1, order), index.gather(1, order)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    return values.gather(1, order), index.gather(1, order)


def search(
    queries: np.ndarray | torch.Tensor,
    corpus: np.ndarray | torch.Tensor,
    k: int = TOP,
    similarity: str = "cosine",
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    budget: int = DEFAULT_BUDGET,
) -> np.ndarray:
    """`(n_queries, min(k, n_corpus))` corpus indices of each query's top results, best first.

    Exact (every similarity is computed), in blocks of at most `budget` scores; cosine normalises the
    rows of both sides first."""
    q = _prepared(torch.as_tensor(queries).to(device=device, dtype=dtype), similarity)
    c = _prepared(torch.as_tensor(corpus).to(device=device, dtype=dtype), similarity)
    if q.ndim != 2 or c.ndim != 2 or q.shape[1] != c.shape[1]:
        raise ValueError(f"queries {tuple(q.shape)} and corpus {tuple(c.shape)} must be 2-d of the same width")
    n_q, n_c = q.shape[0], c.shape[0]
    k = min(k, n_c)
    out = torch.empty((n_q, k), dtype=torch.int64)
    if n_q == 0 or k == 0:
        return out.numpy()
    b_q, b_c = block_sizes(n_q, n_c, k, budget)
    for qs in range(0, n_q, b_q):
        qb = q[qs:qs + b_q]
        best_v = best_i = None
        for cs in range(0, n_c, b_c):
            scores = qb @ c[cs:cs + b_c].T
            v, i = torch.topk(scores, min(k, scores.shape[1]), dim=1)
            i = i + cs
            if best_v is None:
                best_v, best_i = _merge(v, i, k)
            else:
                best_v, best_i = _merge(torch.cat([best_v, v], 1), torch.cat([best_i, i], 1), k)
        assert best_i is not None
        out[qs:qs + b_q] = best_i.cpu()
    return out.numpy()


def relevance(top: np.ndarray, corpus_labels: np.ndarray, query_labels: np.ndarray) -> np.ndarray:
    """`(n_queries, K)` booleans: result i of query q has the query's label."""
    return np.asarray(corpus_labels)[top] == np.asarray(query_labels)[:, None]


def relevant_counts(corpus_labels: np.ndarray, query_labels: np.ndarray) -> np.ndarray:
    """`R_q`: corpus items sharing each query's label."""
    labels = np.asarray(corpus_labels)
    values, counts = np.unique(labels, return_counts=True)
    lookup = dict(zip(values.tolist(), counts.tolist(), strict=True))
    return np.array([lookup.get(y, 0) for y in np.asarray(query_labels).tolist()], dtype=np.int64)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def ndcg(rel: np.ndarray, n_rel: np.ndarray, k: int = TOP) -> np.ndarray:
    """Per-query nDCG@k with binary gains; NaN where `R_q = 0`."""
    rel = np.asarray(rel, dtype=np.float64)[:, :k]
    disc = _discounts(rel.shape[1])
    dcg = rel @ disc
    ideal = np.concatenate([[0.0], np.cumsum(_discounts(k))])[np.minimum(n_rel, k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, dcg / np.where(ideal > 0, ideal, 1.0), np.nan)


def recall(rel: np.ndarray, n_rel: np.ndarray, k: int = TOP) -> np.ndarray:
    """Per-query recall@k `|relevant ∩ top k| / R_q`; NaN where `R_q = 0`."""
    hits = np.asarray(rel, dtype=np.float64)[:, :k].sum(1)
    return np.where(n_rel > 0, hits / np.maximum(n_rel, 1), np.nan)


def average_precision(rel: np.ndarray, n_rel: np.ndarray, k: int = TOP) -> np.ndarray:
    """Per-query AP@k `Σ rel_i·P@i / min(k, R_q)`; NaN where `R_q = 0`."""
    r = np.asarray(rel, dtype=np.float64)[:, :k]
    precision = np.cumsum(r, 1) / np.arange(1, r.shape[1] + 1)
    return np.where(n_rel > 0, (r * precision).sum(1) / np.maximum(np.minimum(n_rel, k), 1), np.nan)


def overlap(top: np.ndarray, top_full: np.ndarray) -> np.ndarray:
    """Per-query `|top(q) ∩ top_full(q)| / K`."""
    k = top_full.shape[1]
    if k == 0:
        return np.ones(top.shape[0])
    return np.array([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(top, top_full, strict=True)])


class Qrels:
    """Explicit relevance: the relevant (query row, corpus row) pairs, binary."""

    def __init__(self, pairs: np.ndarray, n_queries: int, n_corpus: int) -> None:
        p = np.unique(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=0)
        if p.size and (p.min() < 0 or p[:, 0].max() >= n_queries or p[:, 1].max() >= n_corpus):
            raise ValueError("qrels name a query or corpus row outside the data")
        self.n_corpus = n_corpus
        self.keys = p[:, 0] * n_corpus + p[:, 1]  # sorted, as np.unique sorts the pairs
        self.counts = np.bincount(p[:, 0], minlength=n_queries).astype(np.int64)

    def relevance(self, top: np.ndarray) -> np.ndarray:
        """`(n_queries, K)` booleans: result i of query q is a relevant pair."""
        keys = np.arange(top.shape[0], dtype=np.int64)[:, None] * self.n_corpus + top
        return np.isin(keys, self.keys)


LABEL_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "ndcg@10": ndcg, "recall@10": recall, "map@10": average_precision,
}
METRICS: tuple[str, ...] = (*LABEL_METRICS, "top10_overlap")


def decile_means(scores: np.ndarray) -> np.ndarray:
    """The mean score of each decile of queries (sorted ascending, `numpy.array_split` into 10)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if s.size < DECILES:
        raise ValueError(f"{s.size} scored queries are fewer than {DECILES}: no decile is defined")
    return np.array([part.mean() for part in np.array_split(s, DECILES)])


def per_query_scores(
    metric: str, top: np.ndarray, top_full: np.ndarray, corpus_labels: np.ndarray, query_labels: np.ndarray
) -> np.ndarray:
    """Every query's score under `metric` (NaN for a label metric's queries without a relevant item)."""
    if metric == "top10_overlap":
        return overlap(top, top_full)
    if metric not in LABEL_METRICS:
        raise ValueError(f"metric {metric!r} is not one of {', '.join(METRICS)}")
    return LABEL_METRICS[metric](relevance(top, corpus_labels, query_labels),
                                 relevant_counts(corpus_labels, query_labels))


@dataclass
class RetrievalScorer:
    """Scores representations of one layer by label retrieval: test rows are the queries, the corpus
    is the train rows; the full layer's top 10 is searched once (for `top10_overlap`)."""

    corpus: np.ndarray
    corpus_labels: np.ndarray
    queries: np.ndarray
    query_labels: np.ndarray
    metric: str = "ndcg@10"
    similarity: str = "cosine"
    device: str = "cpu"
    budget: int = DEFAULT_BUDGET
    qrels: np.ndarray | None = None  # explicit pairs (query row, corpus row); None: relevant = same label

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric {self.metric!r} is not one of {', '.join(METRICS)}")
        self.pairs = None if self.qrels is None else Qrels(self.qrels, len(self.query_labels), len(self.corpus_labels))
        self._c = torch.as_tensor(np.asarray(self.corpus, dtype=np.float32), device=self.device)
        self._q = torch.as_tensor(np.asarray(self.queries, dtype=np.float32), device=self.device)
        self.top_full = self._search(self._q, self._c)
        counts = (self.pairs.counts if self.pairs is not None
                  else relevant_counts(self.corpus_labels, self.query_labels))
        self.eligible = np.ones(len(self.query_labels), dtype=bool) if self.metric == "top10_overlap" else counts > 0
        if self.eligible.sum() < DECILES:
            raise DatasetFormatError(
                f"only {int(self.eligible.sum())} test items (queries) have a train item with their label; retrieval "
                f"needs at least {DECILES} (raise max_test / max_train, or use a dataset whose test labels occur in "
                "train)", field="dataset.max_test")

    @property
    def d(self) -> int:
        return int(self._c.shape[1])

    def _search(self, q: torch.Tensor, c: torch.Tensor) -> np.ndarray:
        return search(q, c, TOP, self.similarity, device=self.device, budget=self.budget)

    def scores(self, top: np.ndarray) -> np.ndarray:
        """The scored queries' scores of one ranking (the eligible queries, in order)."""
        if self.pairs is not None and self.metric != "top10_overlap":
            s = LABEL_METRICS[self.metric](self.pairs.relevance(top), self.pairs.counts)
        else:
            s = per_query_scores(self.metric, top, self.top_full, self.corpus_labels, self.query_labels)
        return s[self.eligible]

    def result(self, top: np.ndarray) -> ProbeResult:
        s = self.scores(top)
        return ProbeResult(accuracy=float(s.mean()), per_class_accuracy=decile_means(s), lam=None, correct=s,
                           query_gini=gini(s))

    def subset(self, subset: np.ndarray) -> ProbeResult:
        """The neurons `subset` of queries and corpus."""
        idx = torch.as_tensor(np.asarray(subset, dtype=np.int64), device=self.device)
        return self.result(self._search(self._q.index_select(1, idx), self._c.index_select(1, idx)))

    def projection(self, r: np.ndarray) -> ProbeResult:
        """The projection `x ↦ Rᵀx` (`R` is d × k) of queries and corpus."""
        rt = torch.as_tensor(np.asarray(r, dtype=np.float32), device=self.device)
        return self.result(self._search(self._q @ rt, self._c @ rt))


def pca_axes(corpus: np.ndarray) -> np.ndarray:
    """`d × d` principal axes of the corpus (eigenvectors of its centred Gram, by descending
    eigenvalue). Retrieval's PCA keeps `x ↦ V_kᵀ x` without centring: at k = d a rotation, which keeps
    every dot product and norm, so PCA at k = d ranks as the full layer (up to rounding)."""
    x = np.asarray(corpus, dtype=np.float64)
    xc = x - x.mean(0)
    return axes_of(xc.T @ xc)


def axes_of(centred_gram: np.ndarray) -> np.ndarray:
    """The eigenvectors of a centred Gram `X_cᵀX_c`, by descending eigenvalue (`pca_axes` from the corpus
    rows; a retrieval artifact from the job's kept statistics, `GramStats.centred_gram`)."""
    evals, evecs = np.linalg.eigh(np.asarray(centred_gram, dtype=np.float64))
    return evecs[:, ::-1].copy()
