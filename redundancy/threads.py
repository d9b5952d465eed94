"""How many threads one analysis may use: its process's share of the cores, applied to every pool.

torch's intra-op pool and the BLAS/OpenMP pools under numpy each start one thread per core. Two
jobs (or a job and any other load) on the same cores then run more busy threads than there are
cores, and the threads spin waiting for each other: the same job costs several times the CPU
seconds (issue 18 measured ~60 CPU-s against ~22 quiet). Capping each process to its share keeps
the work what it is; see `bench/threads.py` and docs/benchmarks.md.
"""

from __future__ import annotations

import os

# Read by OpenMP, MKL, OpenBLAS, BLIS, Accelerate and numexpr when they load: set for libraries not
# yet loaded and for child processes (data-loader workers).
THREAD_ENV: tuple[str, ...] = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
)


def available_cpus() -> int:
    """The cores this process may run on (its affinity mask, e.g. under taskset or a container)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def thread_share(concurrency: int = 1, cpus: int | None = None) -> int:
    """One job's share of the cores when ``concurrency`` jobs run at once: at least one thread."""
    return max(1, (cpus if cpus is not None else available_cpus()) // max(1, concurrency))


def cap_threads(threads: int) -> int:
    """Cap torch's intra-op threads and every BLAS/OpenMP pool of this process (and the environment
    of its children) to ``threads``; returns it. threadpoolctl, when installed, limits the pools
    already loaded (numpy's OpenBLAS); torch is told directly."""
    threads = max(1, int(threads))
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    import torch  # lazy: the thread settings module must not pull torch into processes that only read it

    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits  # lazy: optional, applied when installed
    except ImportError:
        return threads
    threadpool_limits(limits=threads)  # not as a context manager: the limit stays for the process
    return threads
