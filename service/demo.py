"""`advisor demo`: the whole product in one command, with no Postgres and no Redis.

Starts `advisor serve` (embedded: SQLite + a local Celery worker) on a free port in a fresh data
directory, waits for /readyz, submits the demo analysis (EfficientNet-Lite0 with offline ImageNet
weights × scikit-learn digits), prints stage and progress while polling, then prints first the
headline (the answer at relative δ = 0.05 with its fairness cost) and then a table for other δ.

Why these settings: digits are 8 × 8 pixels, so upscaling them to the model's 224 px adds no
information, only 12× the extraction cost; at 64 px the ImageNet features still separate the ten
digits (about 92% with a linear probe on all 1,280 neurons) and the accuracy curve rises over two
decades of fractions, so the answer shows real redundancy instead of "keep the full layer". Nine
fractions, three seeds and one baseline (PCA) keep the probing short. The whole demo needs about
40 CPU-seconds, about 35 s on two idle cores (see the README for the measurement).

`--keep` leaves the server running (until Ctrl-C) and prints the UI's address; otherwise the server
stops at the end and the demo prints how to reopen its data directory, never an address that is dead.
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

from service.core.status import JobStatus

HEADLINE_DELTA, HEADLINE_MODE = 0.05, "relative"
TABLE = [(0.01, "relative"), (0.05, "relative"), (0.1, "relative"), (0.01, "absolute"), (0.05, "absolute")]

DEMO_ANALYSIS: dict[str, Any] = {
    "model": {"name": "tf_efficientnet_lite0", "weights": "bundled"},
    "dataset": {"spec": "digits"},
    "image_size": 64,
    "fractions": [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0],
    "seeds": 3,
    "baselines": ["pca"],
    "deltas": [HEADLINE_DELTA, 0.01, 0.1],
    "delta_mode": HEADLINE_MODE,
}

QUICK_JOB: dict[str, Any] = {
    "model": {"name": "tf_efficientnet_lite0", "weights": "random"},
    "dataset": {"spec": "digits", "max_train": 300, "max_test": 100},
    "image_size": 32,
    "fractions": [0.05, 0.1, 0.25, 0.5, 1.0],
    "seeds": 2,
    "deltas": [HEADLINE_DELTA],
    "delta_mode": HEADLINE_MODE,
}



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _embedded_env(data_dir: Path) -> dict[str, str]:
    """This process's environment, less anything that would point the server elsewhere or require keys."""
    drop = ("DATABASE_URL", "BROKER_URL", "ADVISOR_DATABASE_URL", "ADVISOR_BROKER_URL", "ADVISOR_API_KEYS",
            "ADVISOR_EMBEDDED_WORKER")
    env = {k: v for k, v in os.environ.items() if k not in drop}
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
    return f"{100 * x:.1f}%"


def answer_line(rec: dict[str, Any]) -> str:
    """The answer in one sentence."""
    if not rec["met_below_full"]:
        return f"keep the full layer ({rec['d']} neurons): no tested fraction below 1 stays within δ"
    return (f"keep {rec['k']} of {rec['d']} neurons (fraction {rec['fraction']:g}): "
            f"diffused redundancy DR = {rec['dr']:.2f}")


def print_headline(rec: dict[str, Any]) -> None:
    """The answer at the headline δ, its accuracy, fairness cost and robustness."""
    f = rec["fairness"]
    print(f"\nAnswer for δ = {rec['delta']:g} ({rec['mode']}, criterion {rec['criterion']}) on "
          f"{rec['model']} × {rec['dataset']}:")
    print(f"  {answer_line(rec)}")
    print(f"  accuracy {_pct(rec['accuracy'])} against {_pct(rec['full_accuracy'])} for the full layer "
          f"(threshold {_pct(rec['threshold'])})")
    print(f"  fairness cost: worst class {_pct(f['worst_class_full'])} → {_pct(f['worst_class_at'])} "
          f"({100 * f['worst_class_change']:+.1f} pts); Gini of per-class accuracy "
          f"{f['gini_full']:.3f} → {f['gini_at']:.3f} ({f['gini_change']:+.3f})")
    hurt = [c for c in f.get("most_hurt_classes", []) if c["change"] < 0][:3]
    if hurt:
        print("  classes that lose most: " + ", ".join(
            f"{c['class']} ({_pct(c['accuracy_full'])} → {_pct(c['accuracy_at'])})" for c in hurt))
    checks = [f"worst seed {_pct(rec['worst_seed_accuracy'])} ({'holds' if rec['holds_worst_seed'] else 'fails'})"]
    if rec.get("ci_low") is not None:
        verdict = "holds" if rec.get("holds_ci_lower") else "fails"
        checks.append(f"95% CI {_pct(rec['ci_low'])}–{_pct(rec['ci_high'])} ({verdict} at its lower bound)")
    print("  robustness: " + "; ".join(checks))


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\nOther tolerances, answered from the stored curve (nothing is recomputed):")
    print("      δ  mode       keep k of d   fraction     DR  accuracy  worst class change  Gini change")
    for r in rows:
        f = r["fairness"]
        print(f"  {r['delta']:5.2f}  {r['mode']:<9} {r['k']:>5} of {r['d']:<5} {r['fraction']:>8g}  {r['dr']:5.2f}"
              f"  {_pct(r['accuracy']):>8}  {100 * f['worst_class_change']:+14.1f} pts  {f['gini_change']:+11.3f}")


def progress_line(job: dict[str, Any]) -> str:
    parts = [f"{100 * job['progress']:5.1f}%", f"{job['status']:<9}", f"{job['stage'] or '':<10}"]
    if job.get("message"):
        parts.append(job["message"])
    return "  " + " ".join(parts)


def poll(client: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    """Poll until the job ends, printing a line whenever its stage changes or progress moves 10%."""
    deadline = time.monotonic() + timeout
    last: tuple[str, str | None, int] | None = None
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        key = (job["status"], job["stage"], int(job["progress"] * 10))
        if key != last:
            print(progress_line(job), flush=True)
            last = key
        if JobStatus(job["status"]).finished:
            return job
        if time.monotonic() > deadline:
            client.post(f"/v1/jobs/{job_id}/cancel")
            raise TimeoutError(f"job {job_id} did not finish within {timeout:.0f} s (cancelled)")
        time.sleep(0.5)


def _seconds_between(a: str | None, b: str | None) -> float:
    if not a or not b:
        return 0.0
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def _start_server(ddir: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--data-dir", str(ddir),
             "--log-level", "warning"],
            env=_embedded_env(ddir), stdout=log, stderr=subprocess.STDOUT,
        )


def run_demo(data_dir: str | None = None, port: int = 0, quick: bool = False, timeout: float = 1800.0,
             keep: bool = False) -> int:
    started = time.monotonic()
    ddir = Path(data_dir).expanduser().resolve() if data_dir else Path(tempfile.mkdtemp(prefix="advisor-demo-"))
    ddir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = ddir / "server.log"
    print(f"Starting the embedded service (SQLite + one worker; data in {ddir}) ...", flush=True)
    proc = _start_server(ddir, port, log_path)
    ok = False
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            wait_ready(client, proc)
            body = QUICK_JOB if quick else DEMO_ANALYSIS
            r = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": f"demo-{time.time_ns()}"})
            r.raise_for_status()
            job = r.json()
            print(f"Submitted {body['model']['name']} ({body['model']['weights']} weights) × "
                  f"{body['dataset']['spec']} at {body['image_size']} px, {len(body['fractions'])} fractions × "
                  f"{body['seeds']} seeds: job {job['id']}", flush=True)
            job = poll(client, job["id"], timeout)
            if job["status"] != JobStatus.SUCCEEDED:
                err = job.get("error") or {}
                print(f"Job ended {job['status']}: {err.get('code')}: {err.get('message')}", file=sys.stderr)
                return 1
            print(f"Job succeeded in {_seconds_between(job['started_at'], job['finished_at']):.0f} s.", flush=True)

            def rec(delta: float, mode: str) -> dict[str, Any]:
                got = client.get(f"/v1/jobs/{job['id']}/recommendation", params={"delta": delta, "delta_mode": mode})
                got.raise_for_status()
                return got.json()

            print_headline(rec(HEADLINE_DELTA, HEADLINE_MODE))
            print_table([rec(d, m) for d, m in TABLE])
            ok = True
            print(f"\nDemo finished in {time.monotonic() - started:.0f} s.", flush=True)
            if keep:
                print(f"The server keeps running: open {base}/ui/jobs/{job['id']} (API docs: {base}/docs). "
                      "Press Ctrl-C to stop it.", flush=True)
                with contextlib.suppress(KeyboardInterrupt):
                    proc.wait()
            return 0
    except Exception as exc:  # noqa: BLE001 - tell the user what happened and where the log is
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        with contextlib.suppress(OSError):
            print("--- server log (tail) ---\n" + log_path.read_text()[-3000:], file=sys.stderr)
        return 1
    finally:
        stop(proc)
        print("Server stopped.", flush=True)
        if ok:
            print(f"The results stay in {ddir}: `advisor serve --data-dir {ddir}` serves them again, "
                  "with the web UI at /ui/ on the address it prints.", flush=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
