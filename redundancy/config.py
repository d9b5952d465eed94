"""The analysis configuration: everything that determines a result, validated at the edge."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

# The paper's grid for wide ResNets (Nanda et al. 2023): 14 fractions, 5 seeds each.
PAPER_FRACTIONS: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 0.9, 1.0,
)
DEFAULT_DELTAS: tuple[float, ...] = (0.01, 0.05, 0.1)



def data_config_as_json(data_config: Mapping[str, Any]) -> dict[str, Any]:
    """timm's data config (input size, mean, std, ... as tuples) as JSON keeps it: tuples become lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()}


def data_config_from_json(data_config: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`data_config_as_json`: lists back as tuples, as ``timm.data.create_transform``
    takes them."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data_config.items()}


DeltaMode = Literal["relative", "absolute"]
Criterion = Literal["mean", "worst_seed"]
ProbeKind = Literal["ridge", "logistic"]
LogisticSolver = Literal["lbfgs", "sgd"]
BaselineKind = Literal["pca", "first_k", "random_projection"]
CkaEstimator = Literal["biased", "debiased"]
CkaProtocol = Literal["standard", "paper"]
SubsetMode = Literal["independent", "nested"]
LambdaSelect = Literal["gcv", "val"]
WeightsSpec = str  # "hub" | "bundled" | "random" | a file path
HfPooling = Literal["mean", "cls"]
Task = Literal["classification", "retrieval"]
Metric = Literal["accuracy", "ndcg@10", "recall@10", "map@10", "top10_overlap"]
RETRIEVAL_METRICS: tuple[str, ...] = ("ndcg@10", "recall@10", "map@10", "top10_overlap")
Similarity = Literal["cosine", "dot"]
# New fields left out of `config_hash` while at these values, so a config that does not use them hashes as before.
_HASH_NEUTRAL: dict[str, object] = {"task": "classification", "metric": None, "similarity": "cosine", "layers": None}
SWEEP = "sweep"  # `layers: "sweep"`: the default sweep (`redundancy.sources.models.layers.default_sweep`)
MAX_LAYERS = 64
PRECOMPUTED = "precomputed"  # the model of an `embeddings:` dataset: the vectors are the features
VECTOR_SCHEMES = ("embeddings", "upload")  # dataset schemes whose files hold vectors, not inputs

# Caps on what one analysis may ask for: each is declared in the JSON schema (and so the OpenAPI
# document), and everything the engine would choke on later (a seed numpy refuses, a path the OS
# refuses, a grid too large to finish) is refused here instead.
MAX_PATH_CHARS = 1024  # dataset spec and checkpoint path (Linux PATH_MAX is 4096 bytes)
MAX_NAME_CHARS = 200  # model and layer names
BUNDLED_MODEL = "tf_efficientnet_lite0"  # the one model whose ImageNet weights ship as a package (`weights: bundled`)
MAX_FRACTIONS = 64
MAX_DELTAS = 32
MAX_SAMPLES = 10_000_000  # dataset.max_train / max_test
MAX_SEED = 2**32 - 1  # numpy.random.default_rng / torch.manual_seed accept [0, 2**32)


def _outside(noun: str, bad: list[float], interval: str) -> str:
    """`fraction 2 is outside (0, 1]` or, naming every bad value, `fractions 0, 2 are outside (0, 1]`."""
    if len(bad) == 1:
        return f"{noun} {bad[0]:g} is outside {interval}"
    return f"{noun}s {', '.join(f'{x:g}' for x in bad)} are outside {interval}"


def _dataset_scheme(dataset: object) -> str:
    """`embeddings` for `{"spec": "embeddings:/x.npz"}` (a dict or a DatasetSpec); "" when unknown."""
    spec = dataset.get("spec") if isinstance(dataset, dict) else getattr(dataset, "spec", None)
    return spec.partition(":")[0].strip().lower() if isinstance(spec, str) and ":" in spec else ""


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        ..., min_length=1, max_length=MAX_NAME_CHARS,
        description="A timm model name; `hf:<name or local directory>` for a Hugging Face encoder (text: "
        "datasets); `precomputed` for an embeddings: dataset (the default there).",
        examples=["tf_efficientnet_lite0"],
    )
    weights: WeightsSpec = Field(
        "hub",
        min_length=1,
        max_length=MAX_PATH_CHARS,
        description="`hub` (timm pretrained, needs internet or a warm cache), `bundled` "
        "(offline ImageNet weights for tf_efficientnet_lite0), `random` (tests only) or a path to a "
        ".safetensors / .pth checkpoint.",
        examples=["bundled"],
    )
    pooling: HfPooling | None = Field(
        None, description="`hf:` models only: `mean` (attention-masked) or `cls` over the layer's tokens; "
        "none: what a sentence-transformers directory says (modules.json), else `mean`.",
    )


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: str = Field(
        ..., min_length=1, max_length=MAX_PATH_CHARS,
        description="`digits`, `npz:<path>`, `imagefolder:<root>`, `cifar10`, `cifar100`, "
        "`oxford_pets`, `flowers102`; `embeddings:<path>` (precomputed vectors: .npz, .parquet, .safetensors); "
        "`text:<path>` (.csv, .jsonl, .parquet, for an `hf:` model).",
        examples=["digits"],
    )
    embedding_column: str = Field(
        "embedding", min_length=1, max_length=MAX_NAME_CHARS,
        description="embeddings: .parquet: the column of vectors (a list or fixed-size list of floats).",
    )
    text_column: str = Field("text", min_length=1, max_length=MAX_NAME_CHARS, description="text: the column of texts.")
    label_column: str = Field(
        "label", min_length=1, max_length=MAX_NAME_CHARS,
        description="embeddings: .parquet and text: the label column (integers or strings).",
    )
    split_column: str = Field(
        "split", min_length=1, max_length=MAX_NAME_CHARS,
        description="embeddings: .parquet and text: the split column (`train` / `test`); a text file without it "
        "is split by `test_fraction`.",
    )
    test_fraction: float = Field(
        0.2, gt=0.0, lt=1.0,
        description="text: without a split column, the stratified share of rows held out as test (seed 0).",
    )
    max_train: int | None = Field(
        None, ge=10, le=MAX_SAMPLES, description="Class-balanced, seeded cap on train samples; none: all."
    )
    max_test: int | None = Field(
        None, ge=10, le=MAX_SAMPLES, description="Class-balanced, seeded cap on test samples; none: all."
    )


class AnalysisConfig(BaseModel):
    """What to analyse and how. Equal configs give equal results."""

    model_config = ConfigDict(extra="forbid")

    model: ModelSpec = Field(description="The model; omitted with an embeddings: dataset (then `precomputed`).")
    dataset: DatasetSpec
    layer: str | None = Field(
        None, min_length=1, max_length=MAX_NAME_CHARS,
        description="A named module to probe (e.g. layer3); none: the penultimate representation (pre-logits)."
    )
    image_size: int | None = Field(None, ge=16, le=1024, description="Input size in pixels; none: the model's own.")
    fractions: list[float] = Field(
        default_factory=lambda: list(PAPER_FRACTIONS), min_length=1, max_length=MAX_FRACTIONS,
        json_schema_extra={"items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}},
        description="Neuron fractions to probe, each in (0, 1]; 1 (the full layer) is always added.",
    )
    seeds: int = Field(5, ge=1, le=100, description="Random subsets per fraction.")
    subsets: SubsetMode = Field(
        "independent",
        description="How each seed's subsets are drawn: `independent`: k = round(f·d) neurons drawn anew for "
        "every fraction; `nested` (the paper's protocol): per seed one random permutation of the d neurons, "
        "and fraction f keeps its first floor(f·d), so a seed's smaller subsets lie inside its larger ones.",
    )
    probe: ProbeKind = Field(
        "ridge", description="`ridge`: closed-form probes from the Gram matrix (fast); `logistic`: softmax "
        "(multinomial logistic) probes, solved by `logistic_solver`.",
    )
    deltas: list[float] = Field(
        default_factory=lambda: list(DEFAULT_DELTAS), min_length=1, max_length=MAX_DELTAS,
        json_schema_extra={"items": {"type": "number", "minimum": 0, "exclusiveMaximum": 1}},
        description="Tolerated accuracy losses δ, each in [0, 1); one recommendation per δ.",
    )
    delta_mode: DeltaMode = Field(
        "relative", description="`relative`: keep acc ≥ (1 − δ)·acc(full); `absolute`: acc ≥ acc(full) − δ."
    )
    criterion: Criterion = Field(
        "mean", description="Which accuracy must reach the threshold: the seed `mean`, or the `worst_seed`."
    )
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Master seed: validation split, caps and subset sampling.")
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5, description="Share of train held out as a validation split "
                                "(λ when lambda_select=val; the logistic probe).")
    batch_size: int = Field(64, ge=1, le=4096, description="Images per forward pass during extraction.")
    feature_dtype: Literal["float16", "float32"] = Field(
        "float16",
        description="How the stored validation/test (and, for the logistic probe, train) features are kept on "
        "disk, memory-mapped: float16 halves disk and memory; the statistics are float64 either way.",
    )
    baselines: list[BaselineKind] = Field(
        default_factory=lambda: ["pca", "first_k", "random_projection"], max_length=3,
        description="Compared beside the random subsets at every k: top-k PCA components, the first k "
        "neurons (nested/Matryoshka models), a seeded Gaussian projection to k dimensions.",
    )
    cka: CkaEstimator = Field(
        "biased",
        description="Estimator for part-vs-whole and subset-vs-subset CKA on the test features: the plain "
        "(biased) HSIC, or the debiased (unbiased-HSIC) form. The `cka` of each curve point is always the "
        "biased one from the train Gram.",
    )
    cka_protocol: CkaProtocol = Field(
        "standard",
        description="Which test images subset-vs-subset CKA (`cka_pair`) is measured on: `standard`: every "
        "test image, with the `cka` estimator; `paper`: biased linear CKA on the last batch of 100 test "
        "images (the last 100 in order; all when fewer), as the paper's notebook measures it (its metric "
        "keeps only the last batch). Averaged over seeds either way; part-vs-whole CKA is the same under both.",
    )
    refine_resolution: float | None = Field(
        None, gt=0.0, lt=1.0,
        description="After the grid, bisect between the largest failing and smallest passing fraction for "
        "each δ until they are this close (as a fraction of d, e.g. 0.005); none: no refinement.",
    )
    bootstrap: int = Field(1000, ge=0, le=100_000, description="Bootstrap resamples of the test set; 0: off.")
    ci_level: float = Field(0.95, gt=0.5, lt=1.0, description="Confidence level of the bootstrap interval.")
    logistic_solver: LogisticSolver = Field(
        "lbfgs",
        description="Logistic probe: `lbfgs` (the optimum of sklearn's objective by full-batch L-BFGS, C chosen "
        "per subset on a validation split with at least 5 images per class where the data allow, then refitted "
        "on all training rows) or `sgd` (the paper's optimiser: `logistic_epochs`, `logistic_lr`, "
        "`logistic_weight_decay`, `logistic_batch_size`, best-validation epoch).",
    )
    logistic_epochs: int = Field(30, ge=1, le=500, description="Logistic probe, `sgd` solver: SGD epochs.")
    logistic_lr: float = Field(
        0.1, gt=0.0, le=10.0,
        description="Logistic probe, `sgd` solver: initial learning rate (×0.1 at 1/2 and 3/4 of training).",
    )
    logistic_weight_decay: float = Field(
        5e-4, ge=0.0, le=1.0, description="Logistic probe, `sgd` solver: weight decay.")
    logistic_batch_size: int = Field(
        256, ge=1, le=65536, description="Logistic probe, `sgd` solver: mini-batch size.")
    lambda_select: LambdaSelect = Field(
        "gcv",
        description="How the ridge probe chooses λ: `gcv` (generalised cross-validation in closed form on "
        "all training rows, validation split included) or `val` (best accuracy on the held-out validation "
        "split, the fit split only). The logistic probe always uses the validation split.",
    )

    task: Task = Field(
        "classification",
        description="`classification`: a linear probe's test accuracy per subset (the paper); `retrieval`: exact "
        "nearest-neighbour search per subset, the test items as queries, the train items as the corpus, relevant "
        "= same label, scored by `metric` (no probe is trained).",
    )
    metric: Metric | None = Field(
        None,
        description="The score the advice reads: `accuracy` (classification, its only metric); for retrieval "
        "`ndcg@10` (the default), `recall@10`, `map@10` or `top10_overlap` (overlap of each subset's top 10 with "
        "the full layer's, no labels needed). None: the task's default.",
    )
    similarity: Similarity = Field(
        "cosine", description="Retrieval: `cosine` (rows L2-normalised after the cut) or `dot` (inner product).",
    )

    layers: list[str] | Literal["sweep"] | None = Field(
        None,
        json_schema_extra={"items": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS}},
        description="The layer sweep (issue 21): a list of module names (and/or `pre_logits`) probed from ONE forward "
        "pass, or `sweep`: every stage's output (timm `feature_info`) plus `pre_logits`; for `hf:` encoders "
        "`hidden.0` … `hidden.N` (every other one past 12) plus `output` when it differs. The answer picks the "
        "(layer, k) with the fewest kept neurons within δ of the best full layer, that layer chosen by its "
        "training-side (GCV / validation) score, never the test set. None: the single `layer`. Not for "
        "precomputed vectors; classification only.",
    )

    @field_validator("layers", mode="before")
    @classmethod
    def _sweep_from_a_flag(cls, v: object) -> object:
        """`["sweep"]` (the CLI's `--layers sweep`) is `"sweep"`."""
        return "sweep" if v == ["sweep"] else v

    @field_validator("layers")
    @classmethod
    def _layers_valid(cls, v: list[str] | str | None, info: ValidationInfo) -> list[str] | str | None:
        if v is None:
            return v
        if info.data.get("layer") is not None:
            raise ValueError("give either layer or layers, not both (a single layer is layers: [name])")
        model = info.data.get("model")
        name = getattr(model, "name", "")
        if name == PRECOMPUTED:
            raise ValueError(f"layers (the sweep): {PRECOMPUTED!r} vectors are one layer already, none to sweep")
        if info.data.get("task", "classification") != "classification":
            raise ValueError("layers (the sweep) needs task 'classification': retrieval has no training-side "
                             "score to choose a layer without the test set")
        if isinstance(v, list):
            if not 1 <= len(v) <= MAX_LAYERS:
                raise ValueError(f"layers must name 1 to {MAX_LAYERS} layers, got {len(v)}")
            bad = [x for x in v if not (0 < len(x) <= MAX_NAME_CHARS)]
            if bad:
                raise ValueError(f"layer names must be 1 to {MAX_NAME_CHARS} characters")
            dup = sorted({x for x in v if v.count(x) > 1})
            if dup:
                raise ValueError(f"layers names {', '.join(map(repr, dup))} more than once")
        return v

    def layer_names(self) -> list[str | None] | None:
        """The layers asked for: a list (None standing for the default `pre_logits`), or None for `sweep`
        (the model decides)."""
        if self.layers == SWEEP:
            return None
        if isinstance(self.layers, list):
            return list(self.layers)
        return [self.layer]

    @property
    def score_metric(self) -> str:
        """The metric named in every curve point and recommendation: the configured one or the task's default."""
        if self.metric is not None:
            return self.metric
        return "ndcg@10" if self.task == "retrieval" else "accuracy"

    @field_validator("metric")
    @classmethod
    def _metric_fits_task(cls, v: str | None, info: ValidationInfo) -> str | None:
        task = info.data.get("task", "classification")
        if task == "classification" and v not in (None, "accuracy"):
            raise ValueError(f"metric {v!r} needs task 'retrieval'; classification is scored by 'accuracy'")
        if task == "retrieval" and v == "accuracy":
            raise ValueError(f"task 'retrieval' is scored by one of {', '.join(RETRIEVAL_METRICS)}, not 'accuracy'")
        return v

    @field_validator("similarity")
    @classmethod
    def _similarity_for_retrieval(cls, v: str, info: ValidationInfo) -> str:
        if v != "cosine" and info.data.get("task", "classification") != "retrieval":
            raise ValueError("similarity applies to task 'retrieval' only")
        return v

    @field_validator("cka_protocol")
    @classmethod
    def _paper_protocol_is_biased(cls, v: str, info: ValidationInfo) -> str:
        if v == "paper" and info.data.get("cka") == "debiased":
            raise ValueError("the paper's protocol measures the biased estimator: use cka 'biased' with it")
        return v

    @model_validator(mode="before")
    @classmethod
    def _precomputed_by_default(cls, data: object) -> object:
        """An embeddings: (or uploaded) dataset carries its vectors: the model may be omitted."""
        vectors = isinstance(data, dict) and _dataset_scheme(data.get("dataset")) in VECTOR_SCHEMES
        if vectors and isinstance(data, dict) and data.get("model") is None:
            return {**data, "model": {"name": PRECOMPUTED}}
        return data

    @model_validator(mode="after")
    def _model_fits_dataset(self) -> AnalysisConfig:
        vectors = _dataset_scheme(self.dataset) in VECTOR_SCHEMES
        name = self.model.name
        if vectors and name != PRECOMPUTED:
            raise ValueError(f"an {_dataset_scheme(self.dataset)}: dataset holds its own vectors: model must be "
                             f"{PRECOMPUTED!r} (or omitted), not {name!r}")
        if name == PRECOMPUTED and not vectors:
            raise ValueError(f"model {PRECOMPUTED!r} needs an embeddings: dataset")
        if name == PRECOMPUTED and self.layer is not None:
            raise ValueError("precomputed vectors have no layers: leave layer unset")
        if _dataset_scheme(self.dataset) == "text" and not name.startswith("hf:"):
            raise ValueError(f"a text: dataset needs an hf: model (a Hugging Face encoder), not {name!r}")
        if self.model.pooling is not None and not name.startswith("hf:"):
            raise ValueError("model.pooling applies to hf: models only")
        return self

    @field_validator("fractions")
    @classmethod
    def _fractions_in_range(cls, v: list[float]) -> list[float]:
        bad = [f for f in v if not (0.0 < f <= 1.0)]
        if bad:
            raise ValueError(_outside("fraction", bad, "(0, 1]"))
        return sorted(set(v))

    @field_validator("deltas")
    @classmethod
    def _deltas_in_range(cls, v: list[float]) -> list[float]:
        bad = [d for d in v if not (0.0 <= d < 1.0)]
        if bad:
            raise ValueError(_outside("delta", bad, "[0, 1)"))
        return sorted(set(v))

    @field_validator("baselines")
    @classmethod
    def _unique_baselines(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _full_layer_present(self) -> AnalysisConfig:
        if 1.0 not in self.fractions:
            self.fractions = [*self.fractions, 1.0]
        return self

    def config_hash(self) -> str:
        """A stable hash of everything that determines the result."""
        data = self.model_dump(mode="json")
        data["metric"] = None if self.task == "classification" else self.score_metric  # a default named = omitted
        for name, neutral in _HASH_NEUTRAL.items():
            if data.get(name) == neutral:
                data.pop(name)
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def ridge_fit_splits(self) -> tuple[str, ...]:
        """The splits the ridge probe is fitted on (the one place this rule lives): GCV needs no held-out
        rows, so `gcv` fits on train + val; `val` fits on the fit split alone."""
        return ("train",) if self.lambda_select == "val" else ("train", "val")
