"""CPU seconds of one analysis alone and beside a concurrent copy, with and without the thread cap.

Issue 18, item 8: under load the same job cost ~60 CPU-s against ~22 quiet, because torch and BLAS
each ran one thread per core beside other busy processes and their threads spun waiting for each
other. A worker now caps each job to its share (cores / concurrency; `redundancy.threads`). This
runs one job in a child process alone, then two at once (the second is the concurrent load), once
capped to the share of two jobs and once uncapped (one thread per core), and prints each job's
CPU seconds (user + system of the analysis itself, imports excluded) and the ratio
concurrent / alone. Near 1 means contention does not multiply the work.

    PYTHONPATH=$PWD python bench/threads.py            # ~5 min on 2 loaded cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(threads: int) -> None:
    """One analysis in this process with `threads`; prints {"cpu_s", "wall_s"} of the analysis."""
    from redundancy import AnalysisConfig, Runtime, analyze
    from redundancy.threads import cap_threads

    cap_threads(threads)
    config = AnalysisConfig.model_validate({
        "model": {"name": "resnet18", "weights": "random"}, "dataset": {"spec": "digits"}, "image_size": 64,
        "seeds": 5, "bootstrap": 200,
    })
    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    analyze(config, Runtime(cache_dir=None, device="cpu"))
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"cpu_s": cpu, "wall_s": wall}))


def run(threads: int, copies: int) -> list[dict[str, float]]:
    """`copies` children at once, each with `threads`; their measurements."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, __file__, "--child", str(threads)], stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(copies)]
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        assert p.returncode == 0, f"child failed ({p.returncode})"
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def cpu_name() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor() or platform.machine())
    return f"{model}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        child(a.child)
        return
    from redundancy.threads import available_cpus, thread_share

    cores = available_cpus()
    print(f"# {cpu_name()}")
    print("| threads per job | CPU-s alone | CPU-s each, 2 at once | ratio | wall alone | wall 2 at once |")
    print("|---|---|---|---|---|---|")
    for label, threads in ((f"{thread_share(2)} (capped: share of 2 jobs)", thread_share(2)),
                           (f"{cores} (uncapped: one per core)", cores)):
        alone = run(threads, 1)[0]
        both = run(threads, 2)
        each = sum(b["cpu_s"] for b in both) / len(both)
        print(f"| {label} | {alone['cpu_s']:.1f} | {each:.1f} | {each / alone['cpu_s']:.2f} | "
              f"{alone['wall_s']:.1f} s | {max(b['wall_s'] for b in both):.1f} s |", flush=True)


if __name__ == "__main__":
    main()
