"""The compression artifact: which neurons to keep, a linear head on them, and what it was made from.

For a recommendation (a δ, mode and criterion answered from a report's curve), the artifact holds

- `indices`: one seed's random subset at the recommended `k`, in the layer's channel order (sorted);
  the seed is chosen by `choose_seed`, a training-side score, never by test accuracy;
- `weight` (k × C) and `bias` (C): the ridge probe refitted, with that seed's λ, from the sufficient
  statistics of exactly the rows the probe was fitted on (train + val under GCV, the fit split under
  validation selection), with the standardisation folded in. The probe predicts
  `argmax(z_S W_S + prior)` with `z = (x − μ)/σ`; so `W = W_S / σ_S` (row-wise) and
  `b = prior − (μ_S / σ_S) W_S`, and `logits = x_raw[:, indices] @ W + b`;
- metadata: model, weights identity and backbone hash, layer, timm data config, dataset, the
  recommendation (δ, mode, criterion, accuracy, fairness cost, savings), the subset's own test
  accuracy, and the engine version.

It is stored as one `.safetensors` file (the three tensors, float64 for the head so that it
reproduces the probe's predictions, the metadata as JSON in the header with a sha256 checksum over
tensors and metadata) and a JSON model card beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from redundancy.advice.multitask import MultiTaskRecommendation
from redundancy.advice.recommend import RANDOM_KINDS
from redundancy.config import data_config_as_json, data_config_from_json
from redundancy.deploy.errors import ArtifactError
from redundancy.filemodes import set_export_mode
from redundancy.hashing import hash_json
from redundancy.probing import RidgeProber, draw_subset
from redundancy.report import CurvePoint, Recommendation, Report
from redundancy.sources.stats import GramStats

FORMAT = "redundancy-subset-head/1"
# a projection artifact (pca, random_projection: `redundancy.deploy.methods`): `projection` (d × k) and
# `offset` (d) tensors beside the head, `logits = (x_raw − offset) @ projection @ weight + bias`
PROJECTION_FORMAT = "redundancy-projection-head/1"
# a retrieval artifact (`redundancy.deploy.retrieval`): the kept dimensions only, no head (no `weight`, `bias`):
# `indices`, and for pca / random_projection `projection` (d × k); `kept = x_raw[:, indices] [@ projection]`
RETRIEVAL_FORMAT = "redundancy-retrieval-dims/1"
_OPTIONAL = ("projection", "offset")
_HEADER_KEY = "redundancy.artifact"
_CHECKSUM_KEY = "redundancy.checksum"

SELECTION_RULE = (
    "the probe's own training-side selection score at the recommended k (the curve's `selection_score`: "
    "GCV, lowest wins; validation accuracy, highest wins); over several datasets, the lowest mean rank of "
    "the seed among each dataset's seeds; ties to the lowest seed. Only when a point carries no score: the "
    "highest part-vs-whole CKA on the training features (the mean over datasets). Never test accuracy."
)

PROMISE = (
    "These indices are one seeded random subset of the recommended size. The recommendation rests on "
    "the mean over random subsets: random subsets are interchangeable on average, not individually "
    "optimal, and this one may sit above or below the mean (its own test accuracy is recorded next to "
    "the mean). For a subset that holds δ on its own, prefer the worst-seed criterion or refinement."
)


@dataclass(frozen=True)
class Artifact:
    indices: np.ndarray  # (k,) int64, ascending channel indices of the layer
    weight: np.ndarray | None  # (k, C) float64, standardisation folded in; None: a retrieval artifact (no head)
    bias: np.ndarray | None  # (C,) float64; None with `weight`
    metadata: dict[str, Any]
    projection: np.ndarray | None = None  # (d, k) float64: pca / random_projection (indices: all d channels)
    offset: np.ndarray | None = None  # (d,) float64, subtracted before the projection

    @property
    def method(self) -> str:
        return str(self.metadata.get("subset", {}).get("method", "random_subset"))

    @property
    def has_head(self) -> bool:
        """False for a retrieval artifact: the kept dimensions only (`reduce`), no classifier."""
        return self.weight is not None and self.bias is not None

    @property
    def d(self) -> int:
        return int(self.metadata["model"]["d"])

    @property
    def k(self) -> int:
        return int(self.indices.shape[0] if self.projection is None else self.projection.shape[1])

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["dataset"]["classes"])

    @property
    def layer(self) -> str:
        return str(self.metadata["model"]["layer"])

    @property
    def weights_sha256(self) -> str:
        return str(self.metadata["model"].get("weights_sha256") or "")

    @property
    def data_config(self) -> dict[str, Any]:
        """timm's data config, with its lists back as tuples (as `timm.data.create_transform` takes it)."""
        return data_config_from_json(self.metadata["model"]["data_config"])

    def transform(self) -> Any:
        """The model's eval transform at the size the features were extracted at."""
        import timm  # lazy: timm (a second to import) only when the transform is asked for

        return timm.data.create_transform(**self.data_config, is_training=False)

    def logits(self, x_raw: np.ndarray) -> np.ndarray:
        """`x_raw[:, indices] @ W + b` on the raw layer output (n × d), in float64."""
        if self.weight is None or self.bias is None:
            raise ArtifactError("a retrieval artifact has no head: `reduce` gives the kept dimensions", field="weight")
        return self.reduce(x_raw) @ self.weight + self.bias

    def reduce(self, x_raw: np.ndarray) -> np.ndarray:
        """The k kept dimensions of raw layer outputs (n × d): a gather, or `(x − offset) @ projection`."""
        x = np.asarray(x_raw, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ArtifactError(
                f"features have shape {x.shape}; the artifact expects (n, {self.d}) raw layer outputs", field="d"
            )
        x = x[:, self.indices]
        if self.projection is None:
            return x
        return (x - (0.0 if self.offset is None else self.offset)) @ self.projection

    def predict(self, x_raw: np.ndarray) -> np.ndarray:
        return self.logits(x_raw).argmax(1)


# -- choosing the subset ----------------------------------------------------------------------------


def _badness(p: CurvePoint) -> float:
    """The selection score turned into "lower is better": GCV as it is, validation accuracy negated;
    a NaN counts as the worst."""
    score = float(p.selection_score)  # type: ignore[arg-type]
    if score != score:
        return float("inf")
    return score if p.selection == "gcv" else -score


def _scored(points: Sequence[CurvePoint]) -> bool:
    return all(p.selection in ("gcv", "val") and p.selection_score is not None for p in points) and (
        len({p.selection for p in points}) == 1
    )


def choose_seed(*tasks: Sequence[CurvePoint]) -> int:
    """The seed whose subset stands behind a recommendation, chosen on the training side
    (`SELECTION_RULE`). Each argument is one dataset's random-subset points at the recommended `k`
    (several when several tasks share the subset).

    With selection scores: each dataset ranks its seeds by its probe's own score (GCV lowest first,
    validation accuracy highest first; rank = how many seeds score strictly better), and the seed with
    the lowest mean rank wins, so datasets whose scores sit on other scales weigh the same. Without them
    (older reports): the highest train-Gram CKA averaged over the datasets. Ties to the lowest seed.
    Test accuracy is never looked at."""
    tasks = tuple(t for t in tasks if t)
    if not tasks:
        raise ArtifactError("no random-subset curve points at the recommended k", field="curve")
    if all(_scored(t) for t in tasks):
        ranks: dict[int, list[int]] = {}
        for t in tasks:
            bad = {p.seed: _badness(p) for p in t}
            for seed, b in bad.items():
                ranks.setdefault(seed, []).append(sum(other < b for other in bad.values()))
        return min(ranks, key=lambda s: (float(np.mean(ranks[s])), s))
    by_seed: dict[int, list[float]] = {}
    for p in (p for t in tasks for p in t):
        by_seed.setdefault(p.seed, []).append(p.cka if p.cka is not None else float("nan"))
    return min(by_seed, key=lambda s: (-_nan_low(float(np.mean(by_seed[s]))), s))


def _nan_low(x: float) -> float:
    return x if x == x else float("-inf")


# -- fitting the head -------------------------------------------------------------------------------


def fit_head(stats: GramStats, subset: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """The ridge probe on `subset` with penalty `lam`, fitted from `stats`, folded onto raw features.

    Returns `(W, b)` with `x_raw[:, subset] @ W + b` equal to the probe's `z_S W_S + prior`."""
    problem = stats.standardised()
    empty = np.zeros((0, stats.d))
    none = np.zeros(0, dtype=np.int64)
    w_std = RidgeProber(problem, empty, none, empty, none).weights(subset, lam)  # (k, C) on z
    sd, mu = problem.std[subset], problem.mean[subset]
    weight = w_std / sd[:, None]
    bias = problem.prior - (mu / sd) @ w_std
    return weight, bias


def probe_rows(report: Report) -> int:
    """How many rows the report's ridge probe was fitted on (`AnalysisConfig.ridge_fit_splits`)."""
    return sum(int(report.dataset.sizes.get(split, 0)) for split in report.config.ridge_fit_splits())


def _check_stats(report: Report, stats: GramStats) -> None:
    want = (report.model.d, len(report.dataset.classes), probe_rows(report))
    have = (stats.d, stats.num_classes, stats.n)
    if want != have:
        raise ArtifactError(
            f"the statistics (d, classes, rows) = {have} are not this report's {want}", field="stats"
        )


def build_artifact(
    report: Report,
    stats: GramStats,
    recommendation: Recommendation | MultiTaskRecommendation,
    *,
    weights_sha256: str,
    data_config: dict[str, Any],
    seed: int | None = None,
) -> Artifact:
    """The artifact for one recommendation of `report`, with the head fitted from `stats`.

    `weights_sha256` is `backbone_sha256` of the model the features came from and `data_config` its
    timm data config at the extraction size (`model_facts` gives both). `seed` overrides `choose_seed`
    (a multi-task artifact chooses one seed over every dataset)."""
    if report.probe != "ridge":
        raise ArtifactError(
            f"a head is fitted from the sufficient statistics, which needs the ridge probe; this report used "
            f"{report.probe!r}", field="probe",
        )
    _check_stats(report, stats)
    d, k, seed_master = report.model.d, recommendation.k, report.config.seed
    points = [p for p in report.curve if p.kind in RANDOM_KINDS and p.k == k]
    seed = choose_seed(points) if seed is None else seed
    chosen = next((p for p in points if p.seed == seed), None)
    if chosen is None:
        raise ArtifactError(f"the curve has no random subset of k = {k} with seed {seed}", field="seed")
    if chosen.lam is None:
        raise ArtifactError(f"the curve point at k = {k}, seed {chosen.seed} has no λ", field="curve")
    indices = draw_subset(d, k, chosen.seed, seed_master, report.config.subsets).astype(np.int64)
    weight, bias = fit_head(stats, indices, chosen.lam)
    subset = {
        "k": k,
        "seed": chosen.seed,
        "master_seed": seed_master,
        "kind": chosen.kind,
        "lam": chosen.lam,
        "probe": report.probe,
        "test_accuracy": chosen.accuracy,
        "seed_mean_test_accuracy": float(np.mean([p.accuracy for p in points])),
        "train_cka": chosen.cka,
        "selection": chosen.selection,
        "selection_score": chosen.selection_score,
        "selection_rule": SELECTION_RULE,
        "fitted_on_rows": stats.n,
        "fitted_on_splits": list(report.config.ridge_fit_splits()),
    }
    metadata = artifact_metadata(report, recommendation, weights_sha256, data_config, subset, FORMAT)
    return Artifact(indices=indices, weight=weight, bias=bias, metadata=metadata)


def artifact_metadata(
    report: Report, recommendation: Recommendation | MultiTaskRecommendation, weights_sha256: str,
    data_config: dict[str, Any], subset: dict[str, Any], fmt: str,
) -> dict[str, Any]:
    """What every artifact records: format, engine, model, dataset, the recommendation, the kept
    dimensions (`subset`) and the promise."""
    d, seed_master, ds = report.model.d, report.config.seed, report.dataset
    return {
        "format": fmt,
        "engine_version": report.environment.code_version,
        "model": {
            "name": report.model.name,
            "weights_source": report.model.weights_source,
            "weights_identity": report.model.weights_identity,
            "weights_sha256": weights_sha256,
            "layer": report.model.layer,
            "layer_pooling": report.model.layer_pooling,
            # timm: the `forward_intermediates` index that cuts the network at this layer (None: pre_logits)
            "intermediates_index": next((x.index for x in report.layers if x.layer == report.model.layer), None),
            "d": d,
            "data_config": data_config_as_json(data_config),
        },
        "dataset": {
            "spec": ds.spec,
            "classes": list(ds.classes),
            "sizes": dict(ds.sizes),
            "identity": hash_json(
                {"spec": ds.spec, "sizes": ds.sizes, "classes": ds.classes,
                 "dataset": report.config.dataset.model_dump(mode="json"), "seed": seed_master,
                 "val_fraction": report.config.val_fraction}
            ),
        },
        "recommendation": recommendation.model_dump(mode="json", by_alias=True),
        "subset": subset,
        "promise": PROMISE,
    }


# -- files ------------------------------------------------------------------------------------------


def _checksum(header: str, *arrays: np.ndarray) -> str:
    """sha256 over the tensors' bytes in file order (indices, [weight, bias,] optional ones), then the header."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(header.encode())
    return h.hexdigest()


def card_path(path: Path) -> Path:
    """The JSON model card beside an artifact file."""
    return path.with_suffix(".json")


def save_artifact(artifact: Artifact, path: str | Path) -> Path:
    """Write `path` (.safetensors) and its model card (`card_path`), each atomically. Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"indices": np.ascontiguousarray(artifact.indices, dtype=np.int64)}
    for name in ("weight", "bias", *_OPTIONAL):
        if getattr(artifact, name) is not None:
            tensors[name] = np.ascontiguousarray(getattr(artifact, name), dtype=np.float64)
    header = json.dumps(artifact.metadata, sort_keys=True, separators=(",", ":"))
    checksum = _checksum(header, *tensors.values())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata={_HEADER_KEY: header, _CHECKSUM_KEY: checksum})
    os.replace(set_export_mode(tmp), path)
    card = {**artifact.metadata, "file": path.name, "sha256": checksum,
            "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in tensors.items()},
            "usage": _usage(artifact)}
    card_tmp = card_path(path).with_name(f".{card_path(path).name}.{os.getpid()}.tmp")
    card_tmp.write_text(json.dumps(card, indent=2))
    os.replace(set_export_mode(card_tmp), card_path(path))
    return path


def _usage(artifact: Artifact) -> str:
    kept = "x_raw[:, indices]" if artifact.projection is None else (
        "x_raw[:, indices] @ projection" if artifact.offset is None else "(x_raw[:, indices] - offset) @ projection")
    if not artifact.has_head:
        return f"kept = {kept}   (x_raw: the full embeddings; index and query the kept dimensions)"
    return f"logits = {kept} @ weight + bias   (x_raw: the layer's raw output)"


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    if not path.is_file():
        raise ArtifactError(f"artifact file not found: {path}", field="path")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            header = fh.metadata() or {}
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # truncated, not safetensors, bad header
        raise ArtifactError(f"{path.name} is not a readable safetensors file ({exc})", field="file") from exc
    return tensors, header


def _require(cond: bool, message: str, field: str) -> None:
    if not cond:
        raise ArtifactError(message, field=field)


def load_artifact(
    path: str | Path, *, d: int | None = None, weights_sha256: str | None = None, layer: str | None = None
) -> Artifact:
    """Read and validate an artifact. Refuses, with an `ArtifactError` naming the field, a file that
    is unreadable or corrupted (checksum), inconsistent tensors, and, when given, a different layer
    width `d`, backbone hash or layer."""
    path = Path(path)
    tensors, header = _read(path)
    text = header.get(_HEADER_KEY)
    _require(text is not None, f"{path.name} has no redundancy metadata in its header", "metadata")
    meta = json.loads(text or "{}")
    fmt = meta.get("format")
    _require(fmt in (FORMAT, PROJECTION_FORMAT, RETRIEVAL_FORMAT),
             f"{path.name} is format {fmt!r}, not {FORMAT!r}", "format")
    for name in ("indices",) if fmt == RETRIEVAL_FORMAT else ("indices", "weight", "bias"):
        _require(name in tensors, f"{path.name} has no {name!r} tensor", name)
    idx, w, b = tensors["indices"], tensors.get("weight"), tensors.get("bias")
    extra = {n: tensors[n] for n in _OPTIONAL if n in tensors}
    _require(
        header.get(_CHECKSUM_KEY) == _checksum(text or "", *(t for t in (idx, w, b) if t is not None),
                                               *extra.values()),
        f"{path.name} is corrupted: its tensors and metadata do not match the checksum in its header",
        "checksum",
    )
    for part in ("model", "dataset", "recommendation", "subset"):
        _require(isinstance(meta.get(part), dict), f"{path.name} has no {part!r} section in its metadata", "metadata")
    art = Artifact(indices=idx, weight=w, bias=b, metadata=meta, **extra)
    _validate_tensors(art)
    if d is not None:
        _require(art.d == d, f"the artifact was fitted on a {art.d}-neuron layer, not {d}", "d")
    if weights_sha256 is not None:
        _require(
            art.weights_sha256 == weights_sha256,
            f"the artifact was fitted on weights {art.weights_sha256[:12]}…, not {weights_sha256[:12]}…",
            "model.weights_sha256",
        )
    if layer is not None:
        _require(art.layer == layer, f"the artifact was fitted on layer {art.layer!r}, not {layer!r}", "model.layer")
    return art


def _validate_tensors(art: Artifact) -> None:
    idx, w, b, d = art.indices, art.weight, art.bias, art.d
    _require(idx.ndim == 1 and idx.dtype == np.int64 and idx.size > 0, "indices must be a non-empty int64 vector",
             "indices")
    _require(bool(np.all(idx[1:] > idx[:-1])), "indices must be strictly increasing (channel order)", "indices")
    _require(int(idx[0]) >= 0 and int(idx[-1]) < d, f"indices must lie in [0, {d})", "indices")
    if art.projection is not None:
        _require(art.projection.shape == (idx.size, art.k), f"projection has shape {art.projection.shape}, "
                 f"expected ({idx.size}, k)", "projection")
        _require(art.offset is None or art.offset.shape == (idx.size,), "offset must have one value per index",
                 "offset")
    if w is None or b is None:
        return
    c = len(art.classes)
    _require(w.shape == (art.k, c), f"weight has shape {w.shape}, expected ({art.k}, {c})", "weight")
    _require(b.shape == (c,), f"bias has shape {b.shape}, expected ({c},)", "bias")
    _require(bool(np.isfinite(w).all() and np.isfinite(b).all()), "weight and bias must be finite", "weight")
