"""What keeping `k` of `d` neurons saves: embedding storage and the linear head's size and cost.

Pure arithmetic on (d, k, C). With `V` stored vectors (one million by default):

- embedding bytes `= V · width · bytes_per_value` at float32 (4 bytes) and float16 (2 bytes), for
  the full layer (`width = d`) and the kept subset (`width = k`);
- head parameters of a `C`-way linear classifier: `width · C + C` (weights and bias);
- head multiply-adds per input: `width · C`;
- saved fraction `1 − k/d` (embedding bytes and head multiply-adds both scale with the width).
"""

from __future__ import annotations

from redundancy.report import VECTORS_PER_REPORT, Savings

__all__ = ["BYTES_PER_VALUE", "VECTORS_PER_REPORT", "Savings", "savings"]

BYTES_PER_VALUE: dict[str, int] = {"float32": 4, "float16": 2}

def _head_params(width: int, num_classes: int) -> int:
    return width * num_classes + num_classes


def savings(d: int, k: int, num_classes: int, vectors: int = VECTORS_PER_REPORT) -> Savings:
    """The savings of keeping `k` of `d` neurons for a `num_classes`-way linear head."""
    if d < 1 or not 1 <= k <= d:
        raise ValueError(f"need 1 ≤ k ≤ d, got k = {k}, d = {d}")
    if num_classes < 1 or vectors < 0:
        raise ValueError(f"need num_classes ≥ 1 and vectors ≥ 0, got {num_classes}, {vectors}")
    widths = {"full": d, "kept": k}
    size = {(dt, w): vectors * width * b for dt, b in BYTES_PER_VALUE.items() for w, width in widths.items()}
    full, kept = _head_params(d, num_classes), _head_params(k, num_classes)
    return Savings(
        vectors=vectors,
        embedding_bytes_float32_full=size["float32", "full"],
        embedding_bytes_float32_kept=size["float32", "kept"],
        embedding_bytes_float16_full=size["float16", "full"],
        embedding_bytes_float16_kept=size["float16", "kept"],
        head_params_full=full,
        head_params_kept=kept,
        head_macs_full=d * num_classes,
        head_macs_kept=k * num_classes,
        saved_fraction=1.0 - k / d,
        head_params_saved_fraction=1.0 - kept / full,
    )
