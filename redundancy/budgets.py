"""Storage per kept width, the common vector-index limits, and the widest k a budget allows.

Bytes per stored vector at each dtype (`BYTES_PER_DIM`): float32 4, float16 2, int8 1 per kept dimension.
int8 is per-dimension scalar quantisation (`redundancy.quantise`): each dimension's offset and scale are
stored once for the whole index (8 bytes per dimension, not per vector), so a vector costs k bytes.

`INDEX_LIMITS` is the documented table of the most common hard caps on the width of an indexed vector:

| index                          | column type | max dims | source                                      |
|--------------------------------|-------------|----------|---------------------------------------------|
| pgvector HNSW / IVFFlat        | `vector`    | 2,000    | pgvector README, "Indexing" (0.5 – 0.8)     |
| pgvector HNSW / IVFFlat        | `halfvec`   | 4,000    | pgvector README, "Half-precision indexing"  |

(pgvector stores up to 16,000 dimensions unindexed; the index limits are the ones that bind a search.)
"""

from __future__ import annotations

from typing import Literal

from redundancy.errors import InvalidConfigError

Dtype = Literal["float32", "float16", "int8"]
BYTES_PER_DIM: dict[str, int] = {"float32": 4, "float16": 2, "int8": 1}
MILLION = 1_000_000
INDEX_LIMITS: dict[str, int] = {
    "pgvector_vector_hnsw": 2000,
    "pgvector_halfvec_hnsw": 4000,
}


def bytes_per_vector(k: int, dtype: str) -> int:
    """Bytes one stored vector of `k` kept dimensions takes at `dtype`."""
    if dtype not in BYTES_PER_DIM:
        raise InvalidConfigError(f"dtype {dtype!r} is not one of {', '.join(BYTES_PER_DIM)}", field="dtype")
    return k * BYTES_PER_DIM[dtype]


def fits_indexes(k: int) -> dict[str, bool]:
    """Whether a width of `k` fits each index of `INDEX_LIMITS`."""
    return {name: k <= limit for name, limit in INDEX_LIMITS.items()}


def budget_k(d: int, max_dims: int | None, max_bytes: int | None, dtype: str) -> int:
    """The widest k (≤ d) that both `max_dims` and `max_bytes` at `dtype` allow (0: none)."""
    if max_dims is not None and max_dims < 1:
        raise InvalidConfigError(f"max_dims {max_dims} is below 1", field="max_dims")
    if max_bytes is not None and max_bytes < 1:
        raise InvalidConfigError(f"max_bytes {max_bytes} is below 1", field="max_bytes")
    k = d if max_dims is None else min(d, max_dims)
    if max_bytes is not None:
        k = min(k, max_bytes // bytes_per_vector(1, dtype))
    return k
