"""Create a timm model and load its weights from one of four sources.

- `hub`: timm's pretrained weights (downloads; needs internet or a warm Hugging Face cache).
- `bundled`: offline ImageNet weights for `tf_efficientnet_lite0` (see `bundled.py`).
- `random`: seeded random initialisation, for tests; the report says so.
- a path: a `.safetensors` file, or a `.pth`/`.pt`/`.bin` file read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch

from redundancy.errors import (
    CheckpointMismatchError,
    InvalidConfigError,
    UnknownModelError,
    WeightsNotFoundError,
    WeightsUnavailableError,
)
from redundancy.hashing import hash_file
from redundancy.preflight import CHECKPOINT_SUFFIXES, unknown_model_message
from redundancy.sources.models.bundled import BUNDLED_MODEL, bundled_weights_path, load_bundled_state_dict


@dataclass
class LoadedModel:
    module: torch.nn.Module
    name: str
    weights_source: str  # hub | bundled | random | file
    weights_identity: str
    data_config: dict[str, Any]

    @property
    def weights_random(self) -> bool:
        return self.weights_source == "random"


def check_model_name(name: str, weights: str | None = None) -> None:
    """Raise UnknownModelError, with close matches (those with `weights` available here first), unless
    timm knows `name`."""
    if timm.is_model(name):
        return
    raise UnknownModelError(unknown_model_message(name, weights))


def offline_weights_hint(name: str) -> str:
    """What to use instead of hub weights for `name`: only sources that exist for that model."""
    local = f"give a local checkpoint of {name} (.safetensors or .pth) as the weights"
    if name == BUNDLED_MODEL:
        return f"use weights 'bundled' (offline ImageNet weights for {name}), {local}, or connect to the internet"
    return f"{local}, or use weights 'hub' with internet access (once fills the Hugging Face cache)"


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model", "model_state_dict", "ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointMismatchError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise InvalidConfigError(
            f"checkpoint {path.name}: expected one of {', '.join(CHECKPOINT_SUFFIXES)}", field="model.weights"
        )
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file  # lazy: only for a .safetensors checkpoint

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable, truncated, or pickled objects refused by weights_only
        raise CheckpointMismatchError(f"cannot read checkpoint {path}: {exc}") from exc
    return _unwrap_state_dict(obj, path)


def _classifier_width(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> int | None:
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    if isinstance(head, str) and f"{head}.weight" in state:
        return int(state[f"{head}.weight"].shape[0])
    return None


def _load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)}≠{tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                parts.append(f"{len(items)} {label} (e.g. {', '.join(items[:3])})")
        raise CheckpointMismatchError(f"{origin} does not fit {model.__class__.__name__}: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)


def load_model(name: str, weights: str = "hub", seed: int = 0) -> LoadedModel:
    """Create timm model `name` in eval mode with the requested weights."""
    check_model_name(name, weights)
    source = weights
    if weights == "hub":
        try:
            module = timm.create_model(name, pretrained=True)
        except Exception as exc:
            raise WeightsUnavailableError(
                f"could not fetch pretrained weights for {name!r} from the hub ({type(exc).__name__}: "
                f"{str(exc)[:200]}); {offline_weights_hint(name)}"
            ) from exc
        cfg = module.pretrained_cfg
        identity = f"hub:{cfg.get('hf_hub_id') or cfg.get('url') or name}"
    elif weights == "random":
        torch.manual_seed(seed)
        module = timm.create_model(name, pretrained=False)
        identity = f"random:seed={seed}"
    elif weights == "bundled":
        if name != BUNDLED_MODEL:
            raise InvalidConfigError(
                f"bundled weights exist only for {BUNDLED_MODEL}, not {name!r}; {offline_weights_hint(name)}",
                field="model.weights",
            )
        module = timm.create_model(name, pretrained=False)
        _load_state(module, load_bundled_state_dict(module), "bundled checkpoint")
        identity = f"bundled:sha256={hash_file(bundled_weights_path())}"
    else:
        path = Path(weights).expanduser()
        state = read_checkpoint(path)
        module = timm.create_model(name, pretrained=False)
        width = _classifier_width(module, state)
        if width is not None and width != getattr(module, "num_classes", width):
            module = timm.create_model(name, pretrained=False, num_classes=width)
        _load_state(module, state, f"checkpoint {path.name}")
        identity = f"file:sha256={hash_file(path)}"
        source = "file"
    module.eval()
    data_config = timm.data.resolve_data_config({}, model=module)
    return LoadedModel(
        module=module, name=name, weights_source=source, weights_identity=identity, data_config=data_config
    )
