"""The analysis report: the engine's one output, serialised to JSON by pydantic."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, PrivateAttr

from redundancy.config import AnalysisConfig, Criterion, DeltaMode
from redundancy.savings import Savings

if TYPE_CHECKING:
    from redundancy.stats import GramStats


class ModelInfo(BaseModel):
    name: str
    weights_source: str = Field(description="hub | bundled | random | file")
    weights_identity: str = Field(description="What exactly was loaded: a file hash, a hub tag or a seed.")
    weights_random: bool = Field(False, description="True when the weights were random (tests only).")
    layer: str = Field(description="The module whose output was probed.")
    layer_pooling: str = Field(description="How the layer's output became a vector.")
    d: int = Field(description="Layer width (neurons).")
    input_size: list[int]


class DatasetInfo(BaseModel):
    spec: str
    classes: list[str]
    sizes: dict[str, int] = Field(description="Samples per split: train (fit), val (λ choice), test.")


class CurvePoint(BaseModel):
    fraction: float
    k: int
    seed: int
    accuracy: float
    per_class_accuracy: list[float]
    cka: float
    lam: float | None = Field(
        None, description="Ridge: the penalty chosen on validation. Logistic: the weight decay."
    )
    kind: str = Field(
        "random", description="random (the grid), refinement (bisection for f*), or a baseline: pca, first_k, "
        "random_projection.",
    )
    cka_pair: float | None = Field(
        None, description="CKA between two independent random subsets of this size (test features)."
    )
    cka_debiased: float | None = Field(
        None, description="Part-vs-whole CKA with the debiased estimator (test features), when asked for."
    )


class FractionSummary(BaseModel):
    kind: str = "random"
    fraction: float
    k: int
    seeds: int
    accuracy_mean: float
    accuracy_std: float
    accuracy_min: float
    cka_mean: float
    cka_pair_mean: float | None = None
    per_class_accuracy: list[float] = Field(description="Mean over seeds.")
    ci_low: float | None = Field(None, description="Bootstrap CI of the seed-mean accuracy over test samples.")
    ci_high: float | None = None


class SkippedFraction(BaseModel):
    fraction: float
    k: int
    reason: str


class ClassLoss(BaseModel):
    cls: str = Field(alias="class")
    accuracy_full: float
    accuracy_at: float
    change: float

    model_config = {"populate_by_name": True}


class Fairness(BaseModel):
    gini_full: float
    gini_at: float
    gini_change: float
    cv_full: float
    cv_at: float
    cv_change: float
    worst_class_full: float
    worst_class_at: float
    worst_class_change: float
    range_full: float = Field(description="max - min per-class accuracy, full layer.")
    range_at: float
    range_change: float
    most_hurt_classes: list[ClassLoss]


class Recommendation(BaseModel):
    delta: float
    mode: DeltaMode
    criterion: Criterion
    fraction: float
    k: int
    d: int
    dr: float = Field(description="Diffused redundancy: 1 - fraction.")
    accuracy: float = Field(description="Accuracy at the recommended fraction under the criterion.")
    full_accuracy: float
    threshold: float = Field(description="The accuracy the criterion had to reach.")
    met_below_full: bool = Field(description="False when no tested fraction below 1 met δ.")
    holds_worst_seed: bool = Field(description="Every seed at this fraction reaches the threshold.")
    holds_ci_lower: bool | None = Field(
        None, description="The bootstrap CI's lower bound at this fraction reaches the threshold (None: no CI)."
    )
    worst_seed_accuracy: float
    ci_low: float | None = None
    ci_high: float | None = None
    refined: bool = Field(False, description="f* comes from a refinement probe, not the grid.")
    note: str
    fairness: Fairness
    savings: Savings | None = Field(None, description="What keeping k of d neurons saves (None in older reports).")


class Environment(BaseModel):
    device: str
    amp: bool
    torch: str
    timm: str
    numpy: str
    python: str
    code_version: str
    feature_cache_hit: bool


class Report(BaseModel):
    config: AnalysisConfig
    model: ModelInfo
    dataset: DatasetInfo
    full_accuracy: float
    curve: list[CurvePoint]
    summary: list[FractionSummary] = Field(description="The random subsets (grid and refinement), per k.")
    baselines: list[FractionSummary] = Field(default_factory=list, description="Per baseline kind and k.")
    probe: str = "ridge"
    cka_samples: str = Field(
        "curve `cka`: train features (from the Gram); `cka_pair`/`cka_debiased`: test features",
        description="Which samples each CKA was measured on.",
    )
    skipped_fractions: list[SkippedFraction] = Field(default_factory=list)
    recommendations: list[Recommendation]
    timings: dict[str, float] = Field(description="Seconds per stage.")
    environment: Environment
    warnings: list[str] = Field(
        default_factory=list, description="Conditions that make these numbers less trustworthy, in words."
    )
    # The train split's GramStats the probes were fitted on (set by `analyze`, never serialised): what a
    # head for any δ is fitted from later (`redundancy.deploy.save_stats`).
    _stats: Any = PrivateAttr(None)

    @property
    def stats(self) -> GramStats | None:
        return self._stats
