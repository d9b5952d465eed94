"""Read one or several layers' representations as a vector per image, from ONE forward pass.

Default: the penultimate representation, what feeds the classifier (`forward_head(pre_logits=True)`).
Named modules may be asked for instead, or beside it (the layer sweep, issue 21); each one's output is
global-average-pooled if spatial, or reduced to the CLS token (models with one) or the token mean if it is
a token sequence. The report says which, per layer.

One pass: forward hooks are registered on every named module at once, `forward_features` runs once, and
`forward_head(pre_logits=True)` runs on its output when `pre_logits` is asked for (the head proper,
`forward_head(...)`, only when a named module lives in the head). The layers' pooled vectors are laid side
by side, in the order asked: columns `offsets[i] : offsets[i + 1]` are layer `i`. A single layer is the
same code with one name, so a sweep's columns of a layer equal that layer's own extraction exactly.

The default sweep of a timm model (`default_sweep`): every entry of its `feature_info` (every stage's output
for CNNs, every block for ViTs) in forward order, then `pre_logits`. Position `i` in `feature_info` is the
index `forward_intermediates(indices=[i])` takes, which is how a network is cut at that layer.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch

from redundancy.errors import UnknownLayerError

PENULTIMATE = "pre_logits"


def feature_info_modules(model: torch.nn.Module) -> list[str]:
    """The module names of a timm model's `feature_info` (forward order); [] when it has none."""
    info = getattr(model, "feature_info", None)
    if info is None:
        return []
    entries = info.get_dicts() if hasattr(info, "get_dicts") else list(info)
    return [str(e["module"]) for e in entries if isinstance(e, dict) and e.get("module")]


def default_sweep(model: torch.nn.Module) -> list[str]:
    """Every `feature_info` stage that names a module of the model, in forward order, then `pre_logits`."""
    modules = dict(model.named_modules())
    names = [n for n in dict.fromkeys(feature_info_modules(model)) if n in modules and n != ""]
    return [*names, PENULTIMATE]


def widths_without_weights(model_name: str, layers: Sequence[str] | None, image_size: int | None) -> list[int]:
    """The widths of `layers` (None: the default sweep) of timm's `model_name`, without weights or compute: the
    model built on the meta device and one meta-tensor forward at `image_size` (None: the model's own), as
    `FeatureExtractor` reads them: 0.07-0.25 s on a Xeon core (Lite0, ResNet-50, ViT-S/L, ConvNeXt-B).
    Raises what timm or the forward raises."""
    import timm  # lazy: the extractor itself needs no timm

    with torch.device("meta"):
        model = timm.create_model(model_name, pretrained=False).eval()
    c, h, w = (int(x) for x in (getattr(model, "pretrained_cfg", None) or {}).get("input_size", (3, 224, 224)))
    if image_size is not None:
        h = w = image_size
    extractor = FeatureExtractor(model, layers=list(layers) if layers is not None else default_sweep(model))
    with torch.inference_mode():
        extractor(torch.empty((1, c, h, w), device="meta"))
    assert extractor.widths is not None
    return list(extractor.widths)


def intermediates_index(model: torch.nn.Module, layer: str) -> int | None:
    """The `forward_intermediates` index of `layer` (its position in `feature_info`); None when it is none."""
    names = feature_info_modules(model)
    return names.index(layer) if layer in names else None


class FeatureExtractor:
    """`FeatureExtractor(model)`: pre-logits; `FeatureExtractor(model, "layer3")`: one named module;
    `FeatureExtractor(model, layers=[...])`: several (the sweep), from one forward pass."""

    def __init__(self, model: torch.nn.Module, layer: str | None = None, *,
                 layers: Sequence[str | None] | None = None) -> None:
        if layers is not None and layer is not None:
            raise ValueError("give layer or layers, not both")
        asked = [layer] if layers is None else list(layers)
        if not asked:
            raise UnknownLayerError("no layers to extract")
        self.model = model
        self.layers: list[str] = [name or PENULTIMATE for name in asked]
        self.layer = ",".join(self.layers)  # the one name of a single-layer extractor
        self.poolings: dict[str, str] = {PENULTIMATE: "forward_head(pre_logits=True)"}
        self.widths: list[int] | None = None
        self._modules: dict[str, torch.nn.Module] = {}
        modules = dict(model.named_modules())
        for name in self.layers:
            if name == PENULTIMATE:
                continue
            if name not in modules or name == "":
                close = difflib.get_close_matches(name, [n for n in modules if n], n=3, cutoff=0.5)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise UnknownLayerError(f"model has no module named {name!r}{hint}")
            self._modules[name] = modules[name]

    @property
    def pooling(self) -> str:
        """How each layer's output became a vector ("unknown until the first batch" before one)."""
        said = [self.poolings.get(n, "unknown until the first batch") for n in self.layers]
        if len(self.layers) == 1:
            return said[0]
        return "; ".join(f"{n}: {p}" for n, p in zip(self.layers, said, strict=True))

    @property
    def offsets(self) -> list[int]:
        """Column offsets of the layers in the joined vector (known after the first batch)."""
        if self.widths is None:
            raise RuntimeError("the layers' widths are known after the first batch (see `measure_widths`)")
        out = [0]
        for w in self.widths:
            out.append(out[-1] + w)
        return out

    def measure_widths(self, input_size: Sequence[int]) -> list[int]:
        """The layers' widths, from one forward pass of a single zero image of `input_size` (C, H, W)."""
        with torch.inference_mode():
            self(torch.zeros((1, *[int(s) for s in input_size])))
        assert self.widths is not None
        return list(self.widths)

    def _reduce(self, name: str, out: torch.Tensor) -> torch.Tensor:
        if out.ndim == 4:
            self.poolings[name] = "global average pool over H, W"
            return out.mean(dim=(2, 3))
        if out.ndim == 3:
            prefix = int(getattr(self.model, "num_prefix_tokens", 0) or 0)
            if prefix > 0 and getattr(self.model, "cls_token", None) is not None:
                self.poolings[name] = "CLS token"
                return out[:, 0]
            self.poolings[name] = "mean over tokens"
            return out.mean(dim=1)
        if out.ndim == 2:
            self.poolings[name] = "none (already a vector)"
            return out
        raise UnknownLayerError(f"layer {name!r} outputs a {out.ndim}-d tensor; cannot make a vector")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, Σ widths): every asked layer's pooled vector, side by side, from one forward pass."""
        captured: dict[str, torch.Tensor] = {}

        def hook_for(name: str):  # noqa: ANN202
            def hook(_m: torch.nn.Module, _inp: object, out: object) -> None:
                if name not in captured:  # a module called twice: its first call, as a single hook saw it
                    captured[name] = out[0] if isinstance(out, tuple) else out  # type: ignore[assignment]
            return hook

        handles = [m.register_forward_hook(hook_for(n)) for n, m in self._modules.items()]
        try:
            if self._modules and not hasattr(self.model, "forward_features"):
                self.model(images)
                pre = None
            else:
                feats = self.model.forward_features(images)
                if any(n not in captured for n in self._modules):  # a module of the head
                    self.model.forward_head(feats)
                pre = self.model.forward_head(feats, pre_logits=True) if PENULTIMATE in self.layers else None
        finally:
            for h in handles:
                h.remove()
        parts = []
        for name in self.layers:
            if name == PENULTIMATE:
                parts.append(pre)
                continue
            if name not in captured:
                raise UnknownLayerError(f"module {name!r} did not run in the forward pass")
            parts.append(self._reduce(name, captured[name]))
        self.widths = [int(p.shape[1]) for p in parts]  # type: ignore[union-attr]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # type: ignore[arg-type]
