"""The analysis report: the engine's one output, serialised to JSON by pydantic."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from redundancy.config import AnalysisConfig, Criterion, DeltaMode

VECTORS_PER_REPORT = 1_000_000


class Savings(BaseModel):
    vectors: int = Field(VECTORS_PER_REPORT, description="Number of stored embeddings the byte counts are for.")
    embedding_bytes_float32_full: int
    embedding_bytes_float32_kept: int
    embedding_bytes_float16_full: int
    embedding_bytes_float16_kept: int
    head_params_full: int = Field(description="Weights and bias of a C-way linear head on all d neurons.")
    head_params_kept: int
    head_macs_full: int = Field(description="Multiply-adds of the linear head per input, all d neurons.")
    head_macs_kept: int
    saved_fraction: float = Field(description="1 − k/d: the share of embedding bytes and head multiply-adds saved.")
    head_params_saved_fraction: float = Field(description="1 − (k·C + C)/(d·C + C).")


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
    fairness_groups: list[str] | None = Field(
        None, description="What each curve point's `per_class_accuracy` entry is when it is not a class: for "
        "retrieval, the deciles of queries by score. None: the classes."
    )
    sizes: dict[str, int] = Field(
        description="Samples per split: train (fit), val (held out; with `lambda_select = gcv` the ridge probe "
        "fits on train + val and chooses λ by GCV), test."
    )


class CurvePoint(BaseModel):
    fraction: float
    k: int
    seed: int
    accuracy: float = Field(description="The task's score under `metric`: test accuracy (classification) or the "
                            "mean per-query retrieval score.")
    per_class_accuracy: list[float] = Field(
        description="The fairness vector: per-class test accuracy (classification); for retrieval the mean score "
        "of each decile of queries, ascending (`DatasetInfo.fairness_groups`)."
    )
    metric: str = Field("accuracy", description="What `accuracy` measures: accuracy, ndcg@10, recall@10, map@10, "
                        "top10_overlap.")
    cka: float | None = Field(
        None, description="Part-vs-whole linear CKA on the train features (from the Gram); absent when undefined "
        "(the subset has no variance, e.g. only dead neurons)."
    )
    lam: float | None = Field(
        None, description="Ridge: the penalty λ chosen (by GCV or on validation, see `selection`). Logistic: "
        "the weight decay."
    )
    selection: str | None = Field(
        None, description="How this probe was selected on the training side: `gcv` (ridge, λ by generalised "
        "cross-validation on all training rows) or `val` (validation accuracy: ridge λ, or the logistic epoch)."
    )
    selection_score: float | None = Field(
        None, description="The training-side score of this seed's probe at its `lam`: the GCV value (lower is "
        "better) or the validation accuracy (higher is better). Never a test number."
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
    query_gini: float | None = Field(
        None, description="Retrieval only (None for classification): the Gini coefficient of this point's "
        "per-query scores, all scored queries (not of the decile means); what `Fairness.gini_*` reads."
    )


class FractionSummary(BaseModel):
    kind: str = "random"
    fraction: float
    k: int
    seeds: int
    accuracy_mean: float
    accuracy_std: float
    accuracy_min: float
    cka_mean: float | None = Field(None, description="Mean of the defined part-vs-whole CKAs (absent: none).")
    cka_count: int = Field(0, description="How many seeds had a defined `cka` (the mean is over these).")
    cka_pair_mean: float | None = Field(None, description="Mean of the defined subset-vs-subset CKAs.")
    cka_pair_count: int = Field(0, description="How many seeds had a defined `cka_pair`.")
    per_class_accuracy: list[float] = Field(
        description="Mean over seeds of the per-class accuracy (for display; fairness metrics are per seed)."
    )
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


_PER_SEED = "mean over seeds of the metric on each seed's own per-class accuracy vector"
_QUERY_GINI = "mean over seeds of the Gini of each seed's own per-query scores, exact, not of the decile means"


class Fairness(BaseModel):
    """Inequality of per-class accuracy. Every `*_full` / `*_at` is the mean over seeds of the metric computed
    on each seed's own per-class vector (not the metric of the seed-mean vector); `*_std` is its spread over
    seeds (ddof 1; 0 for one seed); `*_change` is `*_at − *_full`. Retrieval: the vector is the query deciles'
    mean scores, except the Gini, which is of each seed's per-query scores (`CurvePoint.query_gini`)."""

    gini_full: float = Field(description=f"Gini coefficient, full layer: {_PER_SEED} (retrieval: {_QUERY_GINI}).")
    gini_at: float = Field(description=f"Gini coefficient at the recommended fraction: {_PER_SEED} (retrieval: "
                           f"{_QUERY_GINI}).")
    gini_change: float = Field(description="gini_at − gini_full (positive: less equal).")
    cv_full: float = Field(description=f"Coefficient of variation, full layer: {_PER_SEED}.")
    cv_at: float = Field(description=f"Coefficient of variation at the fraction: {_PER_SEED}.")
    cv_change: float
    worst_class_full: float = Field(description=f"Lowest per-class accuracy, full layer: {_PER_SEED}.")
    worst_class_at: float = Field(description=f"Lowest per-class accuracy at the fraction: {_PER_SEED}.")
    worst_class_change: float
    range_full: float = Field(description=f"max − min per-class accuracy, full layer: {_PER_SEED}.")
    range_at: float = Field(description=f"max − min per-class accuracy at the fraction: {_PER_SEED}.")
    range_change: float
    gini_full_std: float = Field(0.0, description="Spread over seeds of gini_full (std, ddof 1).")
    gini_at_std: float = Field(0.0, description="Spread over seeds of gini_at (std, ddof 1).")
    cv_full_std: float = 0.0
    cv_at_std: float = 0.0
    worst_class_full_std: float = 0.0
    worst_class_at_std: float = 0.0
    range_full_std: float = 0.0
    range_at_std: float = 0.0
    worst_decile_full: float | None = Field(
        None, description="Retrieval only (None for classification): the mean score of the worst 10 % of queries "
        "(the lowest ⌈n/10⌉ per-query scores), full layer: mean over seeds of each seed's own.")
    worst_decile_at: float | None = Field(None, description="Retrieval only: the worst decile's mean score at the "
                                          "fraction, mean over seeds of each seed's own.")
    worst_decile_change: float | None = Field(None, description="worst_decile_at − worst_decile_full.")
    seeds_full: int = Field(1, description="Seeds behind the *_full values (the full layer: one).")
    seeds_at: int = Field(1, description="Seeds behind the *_at values.")
    most_hurt_classes: list[ClassLoss] = Field(
        description="Classes whose change (mean over seeds of the class's accuracy minus the full layer's) is "
        "most negative, worst first; at most three."
    )


class MethodAnswer(BaseModel):
    """One reduction method at the fewest dimensions that meet δ (and any fairness limits), by the same rule
    as the recommendation (`redundancy.verdict`)."""

    method: str = Field(description="random_subset | first_k | pca | random_projection.")
    k: int = Field(description="Kept dimensions (d, the full layer, when no tested k below d qualifies).")
    fraction: float = Field(description="k / d.")
    score: float = Field(description="Test accuracy at k under the criterion (seed mean or worst seed).")
    met_below_full: bool = Field(description="False when no tested k below d qualifies (k is then d).")
    seeds: int = Field(description="Seeds behind the score (pca and first_k: one).")
    fairness: Fairness = Field(description="Per seed, against the full layer, as for the recommendation.")
    serving: str = Field(description="What keeping these dimensions costs per vector at serving time.")
    serving_rank: int = Field(description="0 slice < 1 gather < 2 d × k matrix product (ties in the verdict).")


class Verdict(BaseModel):
    method: str = Field(description="The method to ship, or `full_layer` when none qualifies below d.")
    k: int
    reason: str
    nested: bool | None = Field(
        None, description="First-k is at least as good as random subsets at every tested k below d, within the "
        "random subsets' seed spread (mean − std): the layer is nested (Matryoshka-like) and the first k are the "
        "cut to use. None: first_k was not run."
    )
    nested_note: str | None = None


class StorageWidth(BaseModel):
    k: int
    bytes_per_vector: dict[str, int] = Field(description="By dtype: float32, float16, int8.")
    bytes_per_million: dict[str, int] = Field(description="By dtype, for one million vectors.")
    fits: dict[str, bool] = Field(description="By index (see `redundancy.budgets.INDEX_LIMITS`): k ≤ its limit.")


class Storage(BaseModel):
    full: StorageWidth
    verdict: StorageWidth
    note: str


class BudgetMethod(BaseModel):
    method: str
    k: int | None = Field(description="The k with the best score within the budget; None: no tested k fits.")
    score: float | None = None
    fraction_of_full: float | None = Field(None, description="score / the full layer's accuracy.")
    bytes_per_vector: int | None = None
    fairness: Fairness | None = None
    int8_score: float | None = Field(
        None, description="dtype int8: the probe re-scored on int8-quantised test features at this k (measured at "
        "analysis time, `Report.quantised`); None when not measured at this k."
    )


class BudgetAnswer(BaseModel):
    max_dims: int | None
    max_bytes: int | None
    dtype: str
    max_k: int = Field(description="The widest k the budget allows: min(max_dims, max_bytes // bytes per value).")
    methods: list[BudgetMethod]
    best: str | None = Field(description="The method with the highest score within the budget (ties: fewer dims).")
    note: str


class ConstrainedAnswer(BaseModel):
    max_worst_class_drop: float | None
    max_gini_increase: float | None
    met: bool = Field(description="Some tested k meets δ and both limits.")
    k: int | None = None
    fraction: float | None = None
    score: float | None = None
    fairness: Fairness | None = None
    methods: list[MethodAnswer] = Field(default_factory=list, description="Each method under δ and the limits.")
    note: str


class QuantisedScore(BaseModel):
    """The probe re-scored on int8-quantised test features (same weights and λ; measured, not assumed)."""

    method: str
    k: int
    dtype: str = "int8"
    seeds: int
    accuracy_float: float = Field(
        description="Seed-mean test accuracy on the float features, by the same fixed-λ solve as the quantised one."
    )
    accuracy_quantised: float = Field(description="Seed-mean test accuracy on the quantised features.")
    change: float
    calibration: str


class Recommendation(BaseModel):
    delta: float
    mode: DeltaMode
    criterion: Criterion
    fraction: float
    k: int
    d: int
    dr: float = Field(description="Diffused redundancy: 1 − k/d, computed exactly as (d − k)/d.")
    accuracy: float = Field(description="Accuracy at the recommended fraction under the criterion.")
    full_accuracy: float
    threshold: float = Field(description="The accuracy the criterion had to reach.")
    met_below_full: bool = Field(description="False when no tested fraction below 1 met δ.")
    holds_worst_seed: bool = Field(description="Every seed at this fraction reaches the threshold.")
    holds_ci_lower: bool | None = Field(
        None, description="The lower bound of the paired bootstrap interval of (accuracy at this fraction − threshold) "
        "is ≥ 0: the same resampled test images score every seed here and the full layer, so the threshold moves "
        "with the full layer (see `ci_method`). None: no bootstrap."
    )
    worst_seed_accuracy: float
    ci_low: float | None = Field(None, description="Bootstrap CI of this fraction's seed-mean accuracy (low).")
    ci_high: float | None = None
    margin_ci_low: float | None = Field(
        None, description="Paired bootstrap interval of (seed-mean accuracy here − threshold), low end."
    )
    margin_ci_high: float | None = None
    ci_method: str | None = Field(
        None, description="Which interval `holds_ci_lower` used, in words: resamples, level, bootstrap seed, and "
        "whether the full layer was resampled too."
    )
    refined: bool = Field(False, description="f* comes from a refinement probe, not the grid.")
    note: str
    fairness: Fairness
    savings: Savings | None = Field(None, description="What keeping k of d neurons saves (None in older reports).")
    methods: list[MethodAnswer] = Field(
        default_factory=list, description="Every method the job ran at its fewest dimensions within δ."
    )
    verdict: Verdict | None = Field(None, description="The method to ship (fewest dims; ties: cheaper serving).")
    storage: Storage | None = Field(None, description="Bytes per vector and index limits: full layer and verdict.")
    budget: BudgetAnswer | None = Field(None, description="Answered when max_dims or max_bytes is given.")
    constrained: ConstrainedAnswer | None = Field(
        None, description="Answered when max_worst_class_drop or max_gini_increase is given."
    )
    metric: str = Field("accuracy", description="The score δ was applied to: accuracy (classification) or a retrieval "
                        "metric (ndcg@10, recall@10, map@10, top10_overlap).")
    score: float | None = Field(None, description="The score at the recommended fraction under the criterion (for "
                                "classification equal to `accuracy`, which stays).")
    full_score: float | None = Field(None, description="The full layer's score (for classification equal to "
                                     "`full_accuracy`).")
    layer: str | None = Field(None, description="The layer this answer keeps k of its neurons from (the layer sweep "
                              "chooses it; a single-layer job names its layer). None in older reports.")
    reference_layer: str | None = Field(
        None, description="The layer whose full-layer score δ is applied to: the swept layer with the best "
        "training-side (GCV / validation) score of its full-layer probe, chosen without the test set.")
    reference_score: float | None = Field(None, description="That reference layer's full-layer test score.")

    @model_validator(mode="after")
    def _scores_named(self) -> Recommendation:
        """`score` and `full_score` are `accuracy` and `full_accuracy` under the name every task shares."""
        if self.score is None:
            self.score = self.accuracy
        if self.full_score is None:
            self.full_score = self.full_accuracy
        return self


class LayerAnswer(BaseModel):
    """One layer's own f* at one δ (relative to its own full layer)."""

    delta: float
    k: int
    fraction: float
    score: float
    met_below_full: bool


class LayerResult(BaseModel):
    """One swept layer: its width, full-layer scores, training-side selection score, own f*, curve and cost."""

    layer: str
    index: int | None = Field(None, description="timm: the `forward_intermediates` index (position in "
                              "`feature_info`) that cuts the network here; None for pre_logits or other modules.")
    d: int
    pooling: str
    full_accuracy: float
    full_score: float
    selection: str | None = Field(None, description="gcv (lower is better) or val (higher is better).")
    selection_score: float | None = Field(None, description="Seed mean of the full-layer probe's training-side "
                                          "score: what the reference layer is chosen by. Never a test number.")
    reference: bool = Field(False, description="This layer is the reference (best selection score).")
    fraction: float = Field(description="Own f* at the smallest δ.")
    k: int = Field(description="Own kept neurons at the smallest δ.")
    answers: list[LayerAnswer] = Field(default_factory=list, description="Own f* at every δ.")
    macs: int | None = Field(None, description="Multiply-adds per image of the forward pass up to this layer "
                             "(traced with torch.utils.flop_counter at the job's input size).")
    macs_fraction: float | None = Field(None, description="macs / the whole network's.")
    latency_fraction: float | None = Field(None, description="Measured CPU latency per image up to this layer / "
                                           "the whole network's.")
    summary: list[FractionSummary] = Field(default_factory=list)
    curve: list[CurvePoint] = Field(default_factory=list)


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
    quantised: list[QuantisedScore] = Field(
        default_factory=list, description="int8 re-scores at each recommended k (`redundancy.quantise`)."
    )
    recommendations: list[Recommendation]
    timings: dict[str, float] = Field(description="Seconds per stage.")
    environment: Environment
    warnings: list[str] = Field(
        default_factory=list, description="Conditions that make these numbers less trustworthy, in words."
    )
    layers: list[LayerResult] = Field(
        default_factory=list, description="Every probed layer (the layer sweep, issue 21); `curve`, `summary` and "
        "`baselines` above are the reference layer's.")
    layer_selection: str | None = Field(None, description="How the reference layer was chosen, in words.")

    @property
    def fairness_groups(self) -> list[str]:
        """The names of the fairness vector's entries: the classes, or for retrieval the query deciles."""
        return list(self.dataset.fairness_groups or self.dataset.classes)
