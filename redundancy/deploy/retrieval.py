"""The artifact of a retrieval job (`task: retrieval`): which dimensions to keep in the vector index, and the
score they keep. No head: the answer is a reduction of the embeddings, applied to corpus and queries alike.

For a recommendation and a method, at the method's fewest dimensions within δ (`Recommendation.methods`):

- **random_subset**: `indices` = one seed's random subset at k (`draw_subset`, as the engine drew it), the
  seed chosen on the training side (`choose_seed`: the highest part-vs-whole CKA on the corpus; never the
  test score);
- **first_k**: `indices` = `0..k−1`;
- **random_projection**: `indices` = all d, `projection` = the seeded Gaussian `d × k` matrix the engine
  searched with (`random_projection_matrix`, the seed chosen by `choose_seed`);
- **pca**: `indices` = all d, `projection` = the top-k principal axes of the corpus (uncentred, as the
  engine searched: `probing.retrieval.pca_axes`), from the job's kept corpus statistics.

`Artifact.reduce(x)` (numpy) or `redundancy.deploy.reducer(artifact)(x)` (torch) cut full embeddings to
the kept dimensions. The metadata records the metric, the chosen seed's own test score beside the seed
mean, the full layer's score and the similarity, besides everything every artifact records (model,
layer, dataset, recommendation).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from redundancy.advice.recommend import RANDOM_KINDS
from redundancy.deploy.artifact import RETRIEVAL_FORMAT, SELECTION_RULE, Artifact, artifact_metadata, choose_seed
from redundancy.deploy.errors import ArtifactError
from redundancy.deploy.methods import method_k
from redundancy.probing import draw_subset
from redundancy.probing.baselines import random_projection_matrix
from redundancy.probing.retrieval import axes_of
from redundancy.report import CurvePoint, Recommendation, Report
from redundancy.sources.stats import GramStats

RETRIEVAL_PROMISE = (
    "Search the corpus and the queries with the same kept dimensions (`reduce`). A random subset is one seeded "
    "draw of the recommended size: the recommendation rests on the mean over seeds, and this draw's own score is "
    "recorded next to that mean (`subset.score`, `subset.seed_mean_score`)."
)


def corpus_rows(report: Report) -> int:
    """The corpus of label retrieval: every train row, fit and validation splits."""
    return sum(int(report.dataset.sizes.get(split, 0)) for split in ("train", "val"))


def _projection(report: Report, method: str, k: int, seed: int, stats: GramStats | None) -> np.ndarray:
    d = report.model.d
    if method == "random_projection":
        return random_projection_matrix(d, k, seed, report.config.seed)
    if stats is None:
        raise ArtifactError("the pca artifact needs the corpus statistics, which this job did not keep (submit "
                            "it again)", field="stats")
    if (stats.d, stats.n) != (d, corpus_rows(report)):
        raise ArtifactError(f"the statistics (d, rows) = {(stats.d, stats.n)} are not this job's corpus "
                            f"{(d, corpus_rows(report))}", field="stats")
    return axes_of(stats.centred_gram())[:, :k]


def build_retrieval_artifact(
    report: Report, rec: Recommendation, method: str = "random_subset", *, stats: GramStats | None = None,
    weights_sha256: str | None = None, data_config: dict[str, Any] | None = None,
) -> Artifact:
    """The kept dimensions of `method` at its fewest within the recommendation's δ (see the module)."""
    if report.config.task != "retrieval":
        raise ArtifactError("a retrieval artifact is for a task 'retrieval' job", field="task")
    k = method_k(report, rec, method)
    kinds = RANDOM_KINDS if method == "random_subset" else (method,)
    points = [p for p in report.curve if p.kind in kinds and p.k == k]
    if not points:
        raise ArtifactError(f"the curve has no {method} point at k = {k}", field="method")
    chosen = next(p for p in points if p.seed == choose_seed(points)) if len(points) > 1 else points[0]
    d = report.model.d
    projection = None
    if method == "random_subset":
        indices = draw_subset(d, k, chosen.seed, report.config.seed, report.config.subsets).astype(np.int64)
    elif method == "first_k":
        indices = np.arange(k, dtype=np.int64)
    else:
        indices = np.arange(d, dtype=np.int64)
        projection = _projection(report, method, k, chosen.seed, stats)
    subset = _section(report, method, k, chosen, points)
    metadata = artifact_metadata(report, rec, weights_sha256 or "", data_config or {}, subset, RETRIEVAL_FORMAT)
    metadata["promise"] = RETRIEVAL_PROMISE
    return Artifact(indices=indices, weight=None, bias=None, metadata=metadata, projection=projection)


def _section(report: Report, method: str, k: int, chosen: CurvePoint, points: list[CurvePoint]) -> dict[str, Any]:
    return {
        "method": method, "k": k, "seed": chosen.seed, "master_seed": report.config.seed, "kind": chosen.kind,
        "subsets": report.config.subsets, "metric": chosen.metric, "similarity": report.config.similarity,
        "score": chosen.accuracy, "seed_mean_score": float(np.mean([p.accuracy for p in points])),
        "full_score": report.full_accuracy, "train_cka": chosen.cka,
        "selection_rule": SELECTION_RULE if len(points) > 1 else "one search at this k (no seeds to choose from)",
    }
