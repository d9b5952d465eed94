"""The embedded service end to end: seconds from POST /v1/jobs to the recommendation.

    python bench/service_e2e.py                 # 10,000 images, bundled Lite0 at 224 px, the default grid
    python bench/service_e2e.py --smoke         # 120 images at 32 px, 2 fractions: proves the path runs

Starts `advisor serve` (embedded: SQLite + a local worker, the README's one command) on a free port
in a temp data dir, writes an npz of synthetic 32 × 32 images (10 classes), POSTs the job, polls
it, and GETs the recommendation. The clock starts at the POST (the server is already up and its
worker started, as for any user) and stops when the recommendation arrives. Stage timings come
from the job's report.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import subprocess  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from service.demo import _embedded_env, free_port, poll, stop, wait_ready  # noqa: E402


def _synthetic_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.spec_from_file_location("bench_extract", Path(__file__).with_name("extract.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.synthetic_images(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="images (5/6 train, 1/6 test)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--weights", default="bundled")
    ap.add_argument("--smoke", action="store_true", help="120 images at 32 px, a 2-fraction grid")
    ap.add_argument("--timeout", type=float, default=420.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    job: dict[str, object] = {
        "model": {"name": "tf_efficientnet_lite0", "weights": args.weights},
        "image_size": args.image_size,
        "batch_size": args.batch_size,
    }
    if args.smoke:
        args.n = 120
        job.update(image_size=32, batch_size=32, fractions=[0.5, 1.0], seeds=1, bootstrap=0, baselines=[])
    work = Path(tempfile.mkdtemp(prefix="bench-service-"))
    x, y = _synthetic_images(args.n)
    cut = args.n * 5 // 6
    data = work / "images.npz"
    np.savez(data, x_train=x[:cut], y_train=y[:cut], x_test=x[cut:], y_test=y[cut:])
    job["dataset"] = {"spec": f"npz:{data}"}

    port = free_port()
    ddir = work / "server"
    ddir.mkdir()
    with open(work / "server.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--data-dir", str(ddir),
             "--log-level", "warning"],
            env=_embedded_env(ddir) | {"ADVISOR_DATA_ROOTS": str(work)}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_ready(client, proc, timeout=180)
            t0 = time.perf_counter()
            r = client.post("/v1/jobs", json=job)
            r.raise_for_status()
            done = poll(client, r.json()["id"], args.timeout)
            if done["status"] != "succeeded":
                raise SystemExit(f"job {done['status']}: {done.get('error')}")
            rec = client.get(f"/v1/jobs/{done['id']}/recommendation", params={"delta": 0.05})
            rec.raise_for_status()
            seconds = time.perf_counter() - t0
            report = client.get(f"/v1/jobs/{done['id']}/result").json()
    except BaseException:
        print((work / "server.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        stop(proc)
    timings = report.get("timings", {})
    env = report.get("environment", {})
    answer = rec.json()
    print(f"service end to end: {args.n:,} images, Lite0 ({args.weights}) at {job['image_size']} px on "
          f"{env.get('device')}: {seconds:.1f} s from POST to recommendation "
          f"(stages: {', '.join(f'{k} {v:.1f} s' for k, v in timings.items())}); "
          f"δ = 0.05 → keep {answer['k']} of {answer['d']} neurons")
    if args.json:
        args.json.write_text(json.dumps({"images": args.n, "seconds": seconds, "timings": timings,
                                         "device": env.get("device"), "recommendation": answer}, indent=2))


if __name__ == "__main__":
    main()
