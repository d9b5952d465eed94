"""An artifact for every reduction method the job ran, at that method's fewest dimensions within δ
(`Recommendation.methods`, `redundancy.verdict`), each with the head the engine probed it with:

- **random_subset**: `build_artifact` (one seed's subset, chosen on the training side);
- **first_k**: the neurons `0..k−1` (a slice), the ridge head refitted at the first-k point's λ;
- **pca**: `projection = V_k / σ` (the top-k eigenvectors of the standardised train Gram, with the
  standardisation folded in) and `offset = μ`; the head is the engine's PCA probe, solved in the
  eigenbasis, `W = (Λ_k + λI)⁻¹ V_kᵀ B`, `b = prior` (the component scores are probed in their own
  scale, not re-standardised);
- **random_projection**: `projection = R` (the seeded Gaussian `d × k` matrix; the seed chosen by
  `choose_seed`), no offset; the head is `fit_head` on the projection's statistics `projected_stats`.

Every artifact computes `logits = reduce(x_raw) @ weight + bias`; `Artifact.reduce` is a gather, or
`(x − offset) @ projection`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from redundancy.deploy.artifact import (
    FORMAT,
    PROJECTION_FORMAT,
    SELECTION_RULE,
    Artifact,
    _check_stats,
    artifact_metadata,
    build_artifact,
    choose_seed,
    fit_head,
)
from redundancy.deploy.errors import ArtifactError
from redundancy.probing.baselines import projected_stats, random_projection_matrix
from redundancy.report import CurvePoint, Recommendation, Report
from redundancy.sources.stats import GramStats
from redundancy.verdict import METHODS, complete

ARTIFACT_METHODS: tuple[str, ...] = tuple(METHODS)


def method_k(report: Report, rec: Recommendation, method: str) -> int:
    """The method's fewest dimensions within δ, from the recommendation's side-by-side answer."""
    if method not in ARTIFACT_METHODS:
        raise ArtifactError(f"method {method!r} is not one of {', '.join(ARTIFACT_METHODS)}", field="method")
    if not rec.methods:
        rec = complete(rec, report.curve, report.fairness_groups)
    answer = next((m for m in rec.methods if m.method == method), None)
    if answer is None:
        raise ArtifactError(f"this job did not run the {method} baseline (its `baselines` option)", field="method")
    return answer.k


def build_method_artifact(
    report: Report, stats: GramStats, rec: Recommendation, method: str, *,
    weights_sha256: str, data_config: dict[str, Any],
) -> Artifact:
    """The artifact of `method` at its fewest dimensions within the recommendation's δ."""
    k = method_k(report, rec, method)
    if method == "random_subset":
        art = build_artifact(report, stats, rec, weights_sha256=weights_sha256, data_config=data_config)
        art.metadata["subset"]["method"] = method
        return art
    _check_stats(report, stats)
    points = [p for p in report.curve if p.kind == method and p.k == k and p.lam is not None]
    if not points:
        raise ArtifactError(f"the curve has no {method} point at k = {k} (it meets δ nowhere below d and the "
                            "full layer was not probed by it)", field="method")
    chosen = next(p for p in points if p.seed == choose_seed(points)) if len(points) > 1 else points[0]
    lam = float(chosen.lam)  # type: ignore[arg-type]
    d = report.model.d
    projection: np.ndarray | None = None
    offset: np.ndarray | None = None
    if method == "first_k":
        indices = np.arange(k, dtype=np.int64)
        weight, bias = fit_head(stats, indices, lam)
    elif method == "pca":
        indices = np.arange(d, dtype=np.int64)
        projection, offset, weight, bias = _pca_head(stats, k, lam)
    else:
        indices = np.arange(d, dtype=np.int64)
        projection = random_projection_matrix(d, k, chosen.seed, report.config.seed)
        weight, bias = fit_head(projected_stats(stats, projection), np.arange(k), lam)
    subset = _subset_section(report, stats, method, k, chosen, points)
    fmt = FORMAT if projection is None else PROJECTION_FORMAT
    metadata = artifact_metadata(report, rec, weights_sha256, data_config, subset, fmt)
    return Artifact(indices=indices, weight=weight, bias=bias, metadata=metadata, projection=projection,
                    offset=offset)


def _pca_head(stats: GramStats, k: int, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`(projection, offset, W, b)` of the engine's PCA probe (`Baselines.pca`) on raw features."""
    p = stats.standardised()
    evals, evecs = np.linalg.eigh(p.gram)
    evals, evecs = evals[::-1][:k], evecs[:, ::-1][:, :k]
    e = np.clip(evals, 0.0, None)
    weight = (evecs.T @ p.targets) / (e + lam)[:, None]
    return evecs / p.std[:, None], p.mean.copy(), weight, p.prior.copy()


def _subset_section(
    report: Report, stats: GramStats, method: str, k: int, chosen: CurvePoint, points: list[CurvePoint]
) -> dict[str, Any]:
    return {
        "method": method, "k": k, "seed": chosen.seed, "master_seed": report.config.seed, "kind": chosen.kind,
        "lam": chosen.lam, "probe": report.probe, "test_accuracy": chosen.accuracy,
        "seed_mean_test_accuracy": float(np.mean([p.accuracy for p in points])), "train_cka": chosen.cka,
        "selection": chosen.selection, "selection_score": chosen.selection_score,
        "selection_rule": SELECTION_RULE if len(points) > 1 else "one probe at this k (no seeds to choose from)",
        "fitted_on_rows": stats.n, "fitted_on_splits": list(report.config.ridge_fit_splits()),
    }
