"""Issue 18, item 8: each job's torch and BLAS threads are capped to its process's share of the cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from redundancy.threads import available_cpus, thread_share
from service.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, os, sys
sys.path.insert(0, {root!r})
{setup}
import numpy, torch
from threadpoolctl import threadpool_info
print(json.dumps({{"torch": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS"),
                  "blas": sorted({{p["num_threads"] for p in threadpool_info()}})}}))
"""


def _probe(setup: str, **env: str) -> dict:
    code = PROBE.format(root=str(ROOT), setup=setup)
    child_env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")} | env
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_share_is_the_cores_divided_by_the_concurrency() -> None:
    assert [thread_share(c, cpus=8) for c in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    assert thread_share() == available_cpus() >= 1
    assert Settings(worker_concurrency=2).threads_per_job == max(1, available_cpus() // 2)
    assert Settings(worker_concurrency=2, job_threads=3).threads_per_job == 3


def test_cap_threads_caps_torch_blas_and_the_environment() -> None:
    """Before: a worker job ran torch and BLAS with one thread per core, whatever else ran beside it."""
    capped = _probe("import numpy\nfrom redundancy.threads import cap_threads\ncap_threads(1)")
    assert capped == {"torch": 1, "omp": "1", "blas": [1]}


def test_a_prefork_child_caps_itself_to_the_settings_share() -> None:
    capped = _probe("from workers.celery_app import _cap_threads\n_cap_threads()", ADVISOR_JOB_THREADS="1",
                    DATA_DIR=str(ROOT / ".advisor-test-threads-unused"))
    assert capped["torch"] == 1 and capped["blas"] == [1]
