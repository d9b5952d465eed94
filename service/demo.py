"""`advisor demo`: the whole product in one command, with no Postgres and no Redis.

Starts `advisor serve` (embedded: SQLite + a local Celery worker) on a free port in a fresh data
directory, waits for /readyz, submits the bundled demo job (EfficientNet-Lite0 with offline ImageNet
weights × scikit-learn digits), prints stage and progress while polling, then prints the
recommendation for δ = 0.01 (absolute and relative) and its fairness cost, and stops the server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from service.api.schemas import DEMO_JOB
from service.core.status import JobStatus

QUICK_JOB: dict[str, Any] = {
    "model": {"name": "tf_efficientnet_lite0", "weights": "random"},
    "dataset": {"spec": "digits", "max_train": 300, "max_test": 100},
    "image_size": 32,
    "fractions": [0.05, 0.1, 0.25, 0.5, 1.0],
    "seeds": 2,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _embedded_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL")}
    for k in list(env):
        if k in ("ADVISOR_DATABASE_URL", "ADVISOR_BROKER_URL", "ADVISOR_API_KEYS", "ADVISOR_EMBEDDED_WORKER"):
            env.pop(k)
    env["DATA_DIR"] = str(data_dir)
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def wait_ready(client: httpx.Client, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if client.get("/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError("the server did not become ready")


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


def print_recommendation(rec: dict[str, Any]) -> None:
    f = rec["fairness"]
    mode = "absolute" if rec["mode"] == "absolute" else "relative"
    print(f"\nδ = {rec['delta']} ({mode}, criterion {rec['criterion']}):")
    print(
        f"  keep {rec['k']} of {rec['d']} neurons: fraction {rec['fraction']:g}, "
        f"diffused redundancy DR = {rec['dr']:.3f}"
    )
    print(
        f"  accuracy {_pct(rec['accuracy'])} vs full layer {_pct(rec['full_accuracy'])} "
        f"(threshold {_pct(rec['threshold'])})"
    )
    print("  fairness cost (per-class accuracy, full → subset):")
    print(f"    Gini          {f['gini_full']:.4f} → {f['gini_at']:.4f}  ({f['gini_change']:+.4f})")
    print(f"    CV            {f['cv_full']:.4f} → {f['cv_at']:.4f}  ({f['cv_change']:+.4f})")
    print(
        f"    worst class   {_pct(f['worst_class_full'])} → {_pct(f['worst_class_at'])}  "
        f"({100 * f['worst_class_change']:+.1f} pts)"
    )
    hurt = [c for c in f.get("most_hurt_classes", []) if c["change"] < 0][:3]
    if hurt:
        print(
            "    most hurt     "
            + ", ".join(
                f"{c['class']} ({_pct(c['accuracy_full']).strip()} → {_pct(c['accuracy_at']).strip()})" for c in hurt
            )
        )
    print(f"  {rec['note']}")


def run_demo(data_dir: str | None = None, port: int = 0, quick: bool = False, timeout: float = 1800.0) -> int:
    ddir = Path(data_dir).expanduser().resolve() if data_dir else Path(tempfile.mkdtemp(prefix="advisor-demo-"))
    ddir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = ddir / "server.log"
    print(f"Starting the embedded service on {base} (data: {ddir}, log: {log_path}) ...", flush=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.cli",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(ddir),
                "--log-level",
                "warning",
            ],
            env=_embedded_env(ddir),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            wait_ready(client, proc)
            print("Ready. GET /readyz →", client.get("/readyz").json()["checks"], flush=True)
            body = QUICK_JOB if quick else DEMO_JOB
            r = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": f"demo-{time.time_ns()}"})
            r.raise_for_status()
            job = r.json()
            what = "quick job (random weights)" if quick else "bundled demo job"
            print(
                f"Submitted the {what}: {body['model']['name']} ({body['model']['weights']}) × "
                f"{body['dataset']['spec']} → job {job['id']} (Location: {r.headers['location']})",
                flush=True,
            )
            job = poll(client, job["id"], timeout)
            if job["status"] != JobStatus.SUCCEEDED:
                err = job.get("error") or {}
                print(f"Job ended {job['status']}: {err.get('code')}: {err.get('message')}", file=sys.stderr)
                return 1
            took = _seconds_between(job["started_at"], job["finished_at"])
            print(f"Job succeeded in {took:.1f} s.", flush=True)
            for mode in ("absolute", "relative"):
                rec = client.get(f"/v1/jobs/{job['id']}/recommendation", params={"delta": 0.01, "delta_mode": mode})
                rec.raise_for_status()
                print_recommendation(rec.json())
            print("\nAny other δ is answered from the stored curve (no recomputation):")
            print("      δ      mode   fraction      k      DR  accuracy  Gini change  worst-class change")
            for mode in ("absolute", "relative"):
                for delta in (0.02, 0.05, 0.1):
                    r = client.get(
                        f"/v1/jobs/{job['id']}/recommendation", params={"delta": delta, "delta_mode": mode}
                    ).json()
                    f = r["fairness"]
                    print(
                        f"  {delta:5.2f}  {mode:>8}  {r['fraction']:9g}  {r['k']:5d}  {r['dr']:6.3f}  "
                        f"{_pct(r['accuracy'])}  {f['gini_change']:+11.4f}  {100 * f['worst_class_change']:+12.1f} pts"
                    )
            print(f"\nFull report: GET {base}/v1/jobs/{job['id']}/result")
            return 0
    except Exception as exc:  # noqa: BLE001 - tell the user what happened and where the log is
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        with contextlib.suppress(OSError):
            print("--- server log (tail) ---\n" + log_path.read_text()[-3000:], file=sys.stderr)
        return 1
    finally:
        stop(proc)
        print("Server stopped.", flush=True)


def poll(client: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: tuple[str, str | None, int] | None = None
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        key = (job["status"], job["stage"], int(job["progress"] * 20))
        if key != last:
            msg = f"  {job['message']}" if job.get("message") else ""
            print(f"  [{_pct(job['progress'])}] {job['status']:<9} {job['stage'] or '':<10}{msg}", flush=True)
            last = key
        if JobStatus(job["status"]).finished:
            return job
        if time.monotonic() > deadline:
            client.post(f"/v1/jobs/{job_id}/cancel")
            raise TimeoutError(f"job {job_id} did not finish within {timeout:.0f} s (cancelled)")
        time.sleep(1.0)


def _seconds_between(a: str | None, b: str | None) -> float:
    if not a or not b:
        return 0.0
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
