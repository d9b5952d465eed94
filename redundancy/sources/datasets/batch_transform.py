"""timm's eval transform applied to a whole uint8 batch on the device, matching the PIL path.

timm's eval transform is `Resize(short side or (h, w), interpolation) → CenterCrop → ToTensor →
Normalize`, run per image in PIL on the CPU. For array datasets the same numbers come out of one
batched computation on the device the model runs on, fed with uint8 pixels (4× less to upload
than float32):

- Resize (bicubic): Pillow resamples in two separable passes, horizontal first, each rounded and clamped to
  uint8; `torch.nn.functional.interpolate(..., antialias=True)` uses Pillow's kernels, so two
  passes with the same rounding reproduce it (within one grey level on a few pixels in 10⁴).
- CenterCrop: torchvision's offsets `round((H − h) / 2)`, zero padding where the image is smaller.
- `x / 255`, then `(x − mean) / std` per channel.

Grey images are resized on one channel and then replicated (what converting to RGB first gives);
RGBA loses its alpha, as `to_rgb_image` does. `BatchTransform.from_timm` returns None for any
transform it cannot reproduce exactly, and the extractor then uses the PIL path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

# Bicubic only: torch's antialiased bilinear differs from Pillow's by a level on ~1/4 of the pixels
# when upscaling, so bilinear transforms keep the PIL path.
_MODES = {T.InterpolationMode.BICUBIC: "bicubic"}


@dataclass(frozen=True)
class BatchTransform:
    resize: int | tuple[int, int] | None  # short side, or (h, w); None: no resize
    mode: str  # bicubic
    crop: tuple[int, int] | None  # (h, w)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_timm(cls, transform: object) -> BatchTransform | None:
        """The batched equivalent of a torchvision `Compose`, or None when there is none."""
        steps = list(getattr(transform, "transforms", []))
        resize, mode, crop = None, "bicubic", None
        if steps and isinstance(steps[0], T.Resize):
            r = steps.pop(0)
            if r.max_size is not None or r.interpolation not in _MODES or r.antialias is False:
                return None
            size = r.size
            if isinstance(size, int) or len(size) == 1:
                resize = int(size if isinstance(size, int) else size[0])
            else:
                resize = (int(size[0]), int(size[1]))
            mode = _MODES[r.interpolation]
        if steps and isinstance(steps[0], T.CenterCrop):
            crop = tuple(int(s) for s in steps.pop(0).size)
            if len(crop) == 1:
                crop = (crop[0], crop[0])
        if not steps or type(steps[0]).__name__ not in ("ToTensor", "MaybeToTensor"):
            return None
        steps.pop(0)
        if len(steps) != 1 or not isinstance(steps[0], T.Normalize):
            return None
        norm = steps[0]
        mean, std = (tuple(float(v) for v in torch.as_tensor(t).flatten()) for t in (norm.mean, norm.std))
        if len(mean) != 3 or len(std) != 3:
            return None
        return cls(resize=resize, mode=mode, crop=crop, mean=mean, std=std)  # type: ignore[arg-type]

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """Size after the resize: torchvision's rule (the short side to `resize`, aspect kept)."""
        if self.resize is None:
            return h, w
        if isinstance(self.resize, tuple):
            return self.resize
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.resize, int(self.resize * long / short)
        return (new_long, new_short) if w <= h else (new_short, new_long)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W) or (B, H, W, 1|3|4), on any device → float32 (B, 3, h, w), normalised."""
        if pixels.dtype != torch.uint8:
            raise TypeError(f"pixels must be uint8, got {pixels.dtype}")
        x = pixels.unsqueeze(-1) if pixels.ndim == 3 else pixels[..., :3]
        x = x.permute(0, 3, 1, 2).float()  # (B, C, H, W), C = 1 or 3
        h, w = self.output_size(int(x.shape[2]), int(x.shape[3]))
        if w != x.shape[3]:
            x = _resize_pass(x, (int(x.shape[2]), w), self.mode)
        if h != x.shape[2]:
            x = _resize_pass(x, (h, w), self.mode)
        if self.crop is not None:
            x = _center_crop(x, self.crop)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x / 255.0 - mean) / std


def split_at_tensor(transform: object) -> tuple[Callable[[Image.Image], np.ndarray], BatchTransform] | None:
    """For image files: timm's transform cut where the image becomes a tensor. The PIL steps run per
    image and give uint8 (h, w, 3) arrays; `ToTensor → Normalize` runs once per batch, as the
    returned `BatchTransform` (no resize, no crop), on the device. Same numbers as the whole PIL
    transform (`x / 255`, then `(x − mean) / std`), one batched call instead of many small ones
    (timm's Lite0 transform at 224 px on 2 Xeon threads: 11 CPU-ms an image per call, 3.4 with one
    thread: tiny tensor ops pay the thread pool's overhead), and uint8 to upload.

    None unless every image ends the PIL steps at one fixed size (a `CenterCrop`, or a `Resize` to
    (h, w), right before `ToTensor`) and `Normalize` with three channels is the last step."""
    steps = list(getattr(transform, "transforms", []))
    at = next((i for i, t in enumerate(steps) if type(t).__name__ in ("ToTensor", "MaybeToTensor")), None)
    if at is None or at == 0 or len(steps) != at + 2 or not isinstance(steps[-1], T.Normalize):
        return None
    last = steps[at - 1]
    fixed = isinstance(last, T.CenterCrop) or (
        isinstance(last, T.Resize) and not isinstance(last.size, int) and len(last.size) == 2
    )
    if not fixed:
        return None
    norm = steps[-1]
    mean, std = (tuple(float(v) for v in torch.as_tensor(t).flatten()) for t in (norm.mean, norm.std))
    if len(mean) != 3 or len(std) != 3:
        return None
    pil = T.Compose(steps[:at])

    def pixels(image: Image.Image) -> np.ndarray:
        return np.array(pil(image.convert("RGB")), dtype=np.uint8)  # a writable copy, for torch

    return pixels, BatchTransform(resize=None, mode="bicubic", crop=None, mean=mean, std=std)  # type: ignore[arg-type]


def _resize_pass(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """One of Pillow's separable passes: antialiased resampling, then rounding to uint8 levels."""
    return F.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False).round_().clamp_(0, 255)


def _center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    th, tw = size
    h, w = int(x.shape[2]), int(x.shape[3])
    if th > h or tw > w:  # torchvision pads with zeros first
        pad_l, pad_t = (tw - w) // 2 if tw > w else 0, (th - h) // 2 if th > h else 0
        pad_r, pad_b = (tw - w + 1) // 2 if tw > w else 0, (th - h + 1) // 2 if th > h else 0
        x = F.pad(x, (pad_l, pad_r, pad_t, pad_b))
        h, w = int(x.shape[2]), int(x.shape[3])
    top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
    return x[:, :, top : top + th, left : left + tw]
