"""Read one layer's representation as a vector per image.

Default: the penultimate representation, what feeds the classifier (`forward_head(pre_logits=True)`).
A named module may be asked for instead; its output is global-average-pooled if spatial, or reduced
to the CLS token (models with one) or the token mean if it is a token sequence. The report says which.
"""

from __future__ import annotations

import difflib

import torch

from redundancy.errors import UnknownLayerError

PENULTIMATE = "pre_logits"


class FeatureExtractor:
    def __init__(self, model: torch.nn.Module, layer: str | None = None) -> None:
        self.model = model
        self.layer = layer or PENULTIMATE
        self.pooling = "forward_head(pre_logits=True)" if layer is None else "unknown until the first batch"
        self._module: torch.nn.Module | None = None
        if layer is not None:
            modules = dict(model.named_modules())
            if layer not in modules or layer == "":
                close = difflib.get_close_matches(layer, [n for n in modules if n], n=3, cutoff=0.5)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise UnknownLayerError(f"model has no module named {layer!r}{hint}")
            self._module = modules[layer]

    def _reduce(self, out: torch.Tensor) -> torch.Tensor:
        if out.ndim == 4:
            self.pooling = "global average pool over H, W"
            return out.mean(dim=(2, 3))
        if out.ndim == 3:
            prefix = int(getattr(self.model, "num_prefix_tokens", 0) or 0)
            if prefix > 0 and getattr(self.model, "cls_token", None) is not None:
                self.pooling = "CLS token"
                return out[:, 0]
            self.pooling = "mean over tokens"
            return out.mean(dim=1)
        if out.ndim == 2:
            self.pooling = "none (already a vector)"
            return out
        raise UnknownLayerError(f"layer {self.layer!r} outputs a {out.ndim}-d tensor; cannot make a vector")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self._module is None:
            return self.model.forward_head(self.model.forward_features(images), pre_logits=True)
        captured: list[torch.Tensor] = []

        def hook(_m: torch.nn.Module, _inp: object, out: object) -> None:
            captured.append(out[0] if isinstance(out, tuple) else out)  # type: ignore[arg-type]

        handle = self._module.register_forward_hook(hook)
        try:
            self.model(images)
        finally:
            handle.remove()
        return self._reduce(captured[0])
