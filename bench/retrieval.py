"""Exact top-10 search as the retrieval task runs it (`redundancy.probing.retrieval.search`: torch matmul +
top-k in blocks of at most 2**24 scores) against the numpy a user would write first: normalise, one
`queries × corpus` similarity matrix, `argpartition` for the top 10, sort those 10.

The naive path needs the whole `n_q × n_c` float32 matrix (10k × 100k: 4 GB, and argpartition copies
it), so it runs on the first `--naive-queries` queries; the blocked search is timed on that same slice
(the ratio is on equal work) and on every query (the issue's bar: 10k × 100k × 384 within a minute on
a CPU). Both paths must return the same top 10 (their agreement is printed).

    python bench/retrieval.py            # 10,000 queries × 100,000 corpus × 384 dims
    python bench/retrieval.py --quick    # 1,000 × 20,000 × 384, seconds
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time

import numpy as np
import torch

from redundancy.probing.retrieval import DEFAULT_BUDGET, search


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def naive(queries: np.ndarray, corpus: np.ndarray, k: int = 10) -> np.ndarray:
    """What a user writes first: the full similarity matrix, argpartition, then sort the k."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    sims = q @ c.T
    part = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


def timed(fn, *args):  # noqa: ANN001, ANN202 - a tiny timing helper
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--corpus", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--naive-queries", type=int, default=2_000, help="queries the naive path runs on")
    p.add_argument("--quick", action="store_true", help="1,000 × 20,000 × 384")
    a = p.parse_args()
    if a.quick:
        a.queries, a.corpus, a.naive_queries = 1_000, 20_000, 1_000
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((a.corpus, a.dim), dtype=np.float32)
    queries = rng.standard_normal((a.queries, a.dim), dtype=np.float32)
    m = min(a.naive_queries, a.queries)

    search(queries[:8], corpus[:1000])  # warm up torch's kernels
    fast_slice, t_fast_slice = timed(lambda: search(queries[:m], corpus, 10, "cosine"))
    slow, t_slow = timed(naive, queries[:m], corpus)
    _, t_fast_all = timed(lambda: search(queries, corpus, 10, "cosine"))
    agree = float((np.sort(fast_slice, 1) == np.sort(slow, 1)).all(1).mean())

    print(f"CPU: {cpu_name()}, torch threads {torch.get_num_threads()}, torch {torch.__version__}, "
          f"numpy {np.__version__}")
    print(f"corpus {a.corpus:,} × {a.dim}, top 10 by cosine, blocks of ≤ {DEFAULT_BUDGET:,} scores")
    print(f"naive numpy (full matrix + argpartition), {m:,} queries: {t_slow:.2f} s")
    print(f"blocked torch search, same {m:,} queries:          {t_fast_slice:.2f} s  "
          f"(ratio naive / blocked: {t_slow / t_fast_slice:.2f}×; same top 10 on {100 * agree:.2f}% of queries)")
    print(f"blocked torch search, all {a.queries:,} queries:       {t_fast_all:.2f} s "
          f"({a.queries / t_fast_all:,.0f} queries/s; naive would need a {a.queries * a.corpus * 4 / 2**30:.1f} GiB "
          "matrix)")


if __name__ == "__main__":
    main()
