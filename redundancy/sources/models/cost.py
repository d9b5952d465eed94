"""What running the network up to a layer costs (issue 21: what an earlier layer saves).

For each layer: the multiply-adds of the forward pass up to it, traced with `torch.utils.flop_counter`
(FLOPs / 2; convolutions and matrix products, as that counter counts them) on one image at the job's input
size, and the measured latency per image of that truncated forward, both relative to the whole network
(`model(x)`: features and the classifier). A truncated forward stops with an exception raised by a forward
hook on the layer's module the moment it has run (`pre_logits`: `forward_head(forward_features(x),
pre_logits=True)`), so nothing after the layer is counted or timed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from redundancy.sources.models.layers import PENULTIMATE


class _Stop(Exception):
    pass


@dataclass(frozen=True)
class LayerCost:
    layer: str
    macs: int
    macs_fraction: float
    latency_fraction: float | None


def _forward_to(model: torch.nn.Module, layer: str | None, x: torch.Tensor) -> None:
    """Run `model` on `x` up to `layer` (None: the whole network)."""
    if layer is None:
        model(x)
        return
    if layer == PENULTIMATE:
        model.forward_head(model.forward_features(x), pre_logits=True)
        return
    module = dict(model.named_modules())[layer]

    def stop(*_: object) -> None:
        raise _Stop

    handle = module.register_forward_hook(stop)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()


def traced_macs(model: torch.nn.Module, layer: str | None, x: torch.Tensor) -> int:
    """Multiply-adds of the forward pass up to `layer` on `x` (FlopCounterMode's FLOPs / 2)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        _forward_to(model, layer, x)
    return int(counter.get_total_flops() // 2)


def measured_seconds(model: torch.nn.Module, layer: str | None, x: torch.Tensor, repeats: int) -> float:
    """The fastest of `repeats` timed forwards up to `layer` (after one warm-up), in seconds."""
    best = float("inf")
    with torch.inference_mode():
        _forward_to(model, layer, x)
        for _ in range(repeats):
            t = time.perf_counter()
            _forward_to(model, layer, x)
            if x.is_cuda:
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
    return best


def layer_costs(model: torch.nn.Module, layers: Sequence[str], input_size: Sequence[int], *,
                batch: int = 4, repeats: int = 3, latency: bool = True) -> list[LayerCost]:
    """Each layer's forward cost up to it, relative to the whole network (see the module docstring)."""
    device = next(model.parameters()).device
    one = torch.zeros((1, *[int(s) for s in input_size]), device=device)
    whole = traced_macs(model, None, one)
    many = torch.zeros((batch, *[int(s) for s in input_size]), device=device)
    whole_s = measured_seconds(model, None, many, repeats) if latency else None
    out = []
    for layer in layers:
        macs = traced_macs(model, layer, one)
        frac = None
        if whole_s:
            frac = measured_seconds(model, layer, many, repeats) / whole_s
        out.append(LayerCost(layer, macs, macs / whole if whole else float("nan"), frac))
    return out
