"""The cheap meaning checks of an analysis request, every bad field at once (issue 18).

Pydantic checks the shape of a request (types, ranges); these check what the values mean — a model
timm knows, weights that exist for it, a dataset spec the registry parses and, on the user's own
machine, files that exist. They take the raw request (a dict that may fail pydantic elsewhere), so
the engine's CLI and the service can report the shape errors and the meaning errors in one answer.

Model suggestions rank the names whose weights are available here (the bundled model; hub weights
already in the Hugging Face or torch hub cache, as the catalog reports them) first, then by edit
distance: `tf_efficientnet_lite` with weights `bundled` suggests tf_efficientnet_lite0 first.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
from huggingface_hub import try_to_load_from_cache
from timm.models import get_pretrained_cfg

from redundancy.config import BUNDLED_MODEL, MAX_NAME_CHARS, SWEEP
from redundancy.errors import RedundancyError, UnknownModelError
from redundancy.sources.datasets.registry import parse_spec
from redundancy.sources.encoders import uses_feature_source_name

SPECIAL_WEIGHTS: tuple[str, ...] = ("hub", "bundled", "random")  # `model.weights` values that are no path
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pth", ".pt", ".bin")
MAX_SUGGESTIONS = 3


@dataclass(frozen=True)
class Problem:
    """One bad field: its dotted name, a sentence, and a machine-readable code."""

    field: str
    reason: str
    code: str = "invalid_config"


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one character each)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def hub_weights_cached(name: str) -> tuple[bool, str | None]:
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


def has_weights_here(name: str, weights: str | None) -> bool:
    """Whether `weights` for model `name` are on this machine without a download."""
    if weights not in (None, "hub", "bundled"):
        return False  # random weights exist for every model; a checkpoint is one file
    if name == BUNDLED_MODEL:
        return True  # its bundled weights ship with the engine
    return weights != "bundled" and hub_weights_cached(name)[0]


def suggest_models(name: str, weights: str | None = None, limit: int = MAX_SUGGESTIONS) -> list[str]:
    """Close timm names for a misspelt `name`: those with weights available here first, then by edit
    distance (then alphabetically)."""
    close = set(difflib.get_close_matches(name, timm.list_models(), n=20, cutoff=0.6))
    if edit_distance(name, BUNDLED_MODEL) <= max(3, len(name) // 3):
        close.add(BUNDLED_MODEL)
    available = {m for m in close if has_weights_here(m, weights)}
    ranked = sorted(close, key=lambda m: (m not in available, edit_distance(name, m), m))
    return ranked[:limit]


def unknown_model_message(name: str, weights: str | None = None) -> str:
    close = suggest_models(name, weights)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
    return f"unknown timm model {name!r}{hint}"


def model_problems(name: Any, weights: Any) -> list[Problem]:
    """The model's name and weights, each judged alone where it can be."""
    out: list[Problem] = []
    name_ok = isinstance(name, str) and 0 < len(name) <= MAX_NAME_CHARS  # longer: a shape error, not judged
    w = weights if isinstance(weights, str) and weights else None
    if name_ok and uses_feature_source_name(name):  # `precomputed` and `hf:`: the engine's sources check them
        return out
    if name_ok and not timm.is_model(name):
        out.append(Problem("model.name", unknown_model_message(name, w), UnknownModelError.code))
        name_ok = False
    if w is None:
        return out
    if w == "bundled" and name_ok and name != BUNDLED_MODEL:
        out.append(Problem("model.weights", f"bundled weights exist only for {BUNDLED_MODEL}, not {name!r}"))
    elif w not in SPECIAL_WEIGHTS and not w.lower().endswith(CHECKPOINT_SUFFIXES):
        out.append(Problem(
            "model.weights",
            "expected hub, bundled, random or a checkpoint path ending in " + ", ".join(CHECKPOINT_SUFFIXES),
        ))
    return out


def dataset_problems(spec: Any) -> list[Problem]:
    if not isinstance(spec, str) or not spec:
        return []
    try:
        parse_spec(spec)
    except RedundancyError as exc:
        return [Problem("dataset.spec", exc.message, exc.code)]
    return []


def missing_files(request: Mapping[str, Any]) -> list[Problem]:
    """Paths of the request that do not exist on this machine (the engine CLI's check; the service
    confines and checks paths itself, see `service.core.paths`)."""
    out: list[Problem] = []
    dataset, model = _section(request, "dataset"), _section(request, "model")
    spec = dataset.get("spec")
    if isinstance(spec, str) and not dataset_problems(spec):
        _scheme, arg = parse_spec(spec)
        if arg and not Path(arg).expanduser().exists():
            out.append(Problem("dataset.spec", f"{arg} does not exist", "dataset_not_found"))
    weights = model.get("weights")
    if (isinstance(weights, str) and weights not in SPECIAL_WEIGHTS and weights.lower().endswith(CHECKPOINT_SUFFIXES)
            and not Path(weights).expanduser().is_file()):
        out.append(Problem("model.weights", f"checkpoint file not found: {weights}", "weights_not_found"))
    return out


def _section(request: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = request.get(key)
    return value if isinstance(value, Mapping) else {}


def request_problems(request: Mapping[str, Any], *, files: bool = False) -> list[Problem]:
    """Every meaning problem of a raw request (fields of the wrong type are left to pydantic); with
    `files`, also the paths that do not exist here."""
    model, dataset = _section(request, "model"), _section(request, "dataset")
    out = model_problems(model.get("name"), model.get("weights", "hub"))
    out += dataset_problems(dataset.get("spec"))
    if files:
        seen = {p.field for p in out}
        out += [p for p in missing_files(request) if p.field not in seen]
    return out


def layer_stats_bytes(widths: Sequence[int]) -> int:
    """The float64 train Gram of the joined layers, (Σ d_ℓ)²·8 bytes: the sweep accumulates one Gram over all
    its columns (each layer's statistics are its diagonal block)."""
    return 8 * sum(widths) ** 2


def layer_memory_reason(widths: Sequence[int], budget: int) -> str | None:
    """Why the layers' statistics cannot fit in `budget` bytes (`Runtime.max_layer_stats_bytes`), or None."""
    need = layer_stats_bytes(widths)
    if need <= budget:
        return None
    return (f"the layers' statistics need {need:,} bytes ((Σd)² float64 with Σd = {sum(widths)} over "
            f"{len(widths)} layers), more than the budget of {budget:,} bytes: sweep fewer or narrower layers")


def layer_memory_problems(request: Mapping[str, Any], budget: int) -> list[Problem]:
    """A sweep (`layers` given) over a timm model whose layers' statistics exceed `budget`, judged before the
    job starts from the widths of a weightless meta-device model (`widths_without_weights`, 0.07-0.25 s).
    Whatever cannot be judged so (an unknown model or layer, a model the meta device cannot run) is left to
    the run-time check of the same rule (`redundancy.pipeline.check_layer_memory`)."""
    layers, model = request.get("layers"), _section(request, "model")
    name, size = model.get("name"), request.get("image_size")
    if layers is None or not isinstance(name, str) or uses_feature_source_name(name) or not timm.is_model(name):
        return []
    if layers not in (SWEEP, [SWEEP]) and not (isinstance(layers, list) and all(isinstance(x, str) for x in layers)):
        return []
    try:
        widths = _layer_widths(name, None if layers in (SWEEP, [SWEEP]) else tuple(layers),
                               size if isinstance(size, int) and not isinstance(size, bool) else None)
    except Exception:  # noqa: BLE001 - not judged here: the worker measures the widths on a real image
        return []
    reason = layer_memory_reason(widths, budget)
    return [] if reason is None else [Problem("layers", reason)]


@functools.lru_cache(maxsize=256)
def _layer_widths(name: str, layers: tuple[str, ...] | None, size: int | None) -> tuple[int, ...]:
    """`widths_without_weights`, once per (model, layers, size) in a process: every sweep POST asks it."""
    from redundancy.sources.models.layers import widths_without_weights  # lazy: models import this module

    return tuple(widths_without_weights(name, layers, size))


def merge(first: list[tuple[str, str]], more: list[Problem]) -> list[tuple[str, str]]:
    """`first` (e.g. pydantic's errors) plus the problems of fields it does not already name."""
    named = {f for f, _ in first}
    return first + [(p.field, p.reason) for p in more if p.field not in named]
