"""Use an artifact: a subset head as an `nn.Module`, attached to the timm backbone it was fitted on; or,
for a retrieval artifact (no head), the reduction alone (`reducer`)."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import numpy as np
import torch
from torch import nn

from redundancy.deploy.artifact import Artifact
from redundancy.deploy.errors import ArtifactError
from redundancy.sources.models import FeatureExtractor, LoadedModel
from redundancy.sources.models.layers import PENULTIMATE


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    names = (head,) if isinstance(head, str) else tuple(head or ())
    return tuple(f"{n}." for n in names)


def backbone_sha256(model: nn.Module) -> str:
    """sha256 over the model's state dict (names, dtypes, shapes, bytes) without its ImageNet classifier,
    so a timm model created with or without `num_classes` hashes the same."""
    skip = _classifier_prefixes(model)
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if skip and name.startswith(skip):
            continue
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_facts(loaded: LoadedModel, image_size: int | None) -> tuple[str, dict[str, Any]]:
    """What an artifact records about the model: its backbone hash and its timm data config at the
    input size the features were extracted at."""
    cfg = dict(loaded.data_config)
    if image_size is not None:
        cfg["input_size"] = (3, image_size, image_size)
    return backbone_sha256(loaded.module), cfg


class DimensionReducer(nn.Module):
    """`x[..., indices]`, then `(· − offset) @ projection` for pca / random_projection: a full embedding
    (… × d) to the artifact's k kept dimensions. Takes a tensor or an array (a numpy array back for one)."""

    def __init__(self, artifact: Artifact, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.d, self.k, self.method = artifact.d, artifact.k, artifact.method
        self.register_buffer("indices", torch.as_tensor(np.asarray(artifact.indices), dtype=torch.long))
        self.projection: torch.Tensor | None
        self.offset: torch.Tensor | None
        for name in ("projection", "offset"):
            value = getattr(artifact, name)
            self.register_buffer(name, None if value is None else torch.as_tensor(value, dtype=dtype))
        self.dtype = dtype

    def forward(self, x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        if isinstance(x, np.ndarray):
            return self.forward(torch.as_tensor(x)).detach().cpu().numpy()  # type: ignore[union-attr]
        if x.shape[-1] != self.d:
            raise ArtifactError(f"the embeddings have {x.shape[-1]} dimensions; the artifact keeps {self.k} of "
                                f"d = {self.d}", field="d")
        kept = x.index_select(-1, self.indices)
        if self.projection is None:
            return kept
        kept = kept.to(self.dtype)
        return (kept - (0.0 if self.offset is None else self.offset)) @ self.projection


def reducer(artifact: Artifact, dtype: torch.dtype = torch.float32) -> DimensionReducer:
    """The callable that cuts full embeddings to the artifact's kept dimensions (any artifact; the whole
    use of a retrieval one: index the corpus and query with `reducer(art)(x)`)."""
    return DimensionReducer(artifact, dtype=dtype).eval()


class SubsetHead(nn.Module):
    """`logits = x[..., indices] @ W + b` on the raw layer output (… × d), as a `Linear(k, C)`."""

    def __init__(self, artifact: Artifact, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if artifact.weight is None or artifact.bias is None:
            raise ArtifactError("a retrieval artifact has no head: `reducer(artifact)` gives its kept dimensions",
                                field="weight")
        self.d = artifact.d
        self.classes = artifact.classes
        self.reduce = DimensionReducer(artifact, dtype=dtype)  # the kept dimensions (pca / rp: projected)
        self.linear = nn.Linear(artifact.k, len(artifact.classes), dtype=dtype)
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(artifact.weight.T, dtype=dtype))
            self.linear.bias.copy_(torch.as_tensor(artifact.bias, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d:
            raise ArtifactError(f"the head gets {x.shape[-1]} features; it was fitted on d = {self.d}", field="d")
        return self.linear(self.reduce(x).to(self.linear.weight.dtype))


class SubsetClassifier(nn.Module):
    """The timm backbone (`.backbone`), read at the artifact's layer exactly as the engine extracted it,
    followed by the subset head (`.head`): `model(images)` gives the compressed classifier's logits."""

    def __init__(self, backbone: nn.Module, head: SubsetHead, layer: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.layer = layer
        self._extractor = FeatureExtractor(backbone, None if layer == PENULTIMATE else layer)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The raw layer output (n × d) the head reads."""
        return self._extractor(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def _model_name(model: nn.Module) -> str | None:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg.get("architecture")


def attach(
    model: nn.Module, artifact: Artifact, *, check_weights: bool = True, dtype: torch.dtype = torch.float32
) -> SubsetClassifier:
    """The backbone (copied, in eval mode) with the artifact's subset head. Refuses, naming the field, a
    model of another architecture, other weights (backbone hash) or a layer of another width."""
    if not artifact.has_head:
        raise ArtifactError("a retrieval artifact has no head to attach: `redundancy.deploy.reducer(artifact)` cuts "
                            "the model's embeddings to the kept dimensions", field="weight")
    meta = artifact.metadata["model"]
    name = _model_name(model)
    if name is not None and name != meta["name"]:
        raise ArtifactError(f"the artifact is for {meta['name']!r}, the model is {name!r}", field="model.name")
    if check_weights and backbone_sha256(model) != artifact.weights_sha256:
        raise ArtifactError(
            f"the model's weights differ from those the artifact was fitted on ({meta['weights_identity']})",
            field="model.weights_sha256",
        )
    if artifact.layer == PENULTIMATE:
        width = getattr(model, "head_hidden_size", None) or getattr(model, "num_features", None)
        if width is not None and int(width) != artifact.d:
            raise ArtifactError(
                f"the model's penultimate layer has {width} neurons; the artifact was fitted on d = {artifact.d}",
                field="d",
            )
    backbone = copy.deepcopy(model).eval()
    return SubsetClassifier(backbone, SubsetHead(artifact, dtype=dtype), artifact.layer)

