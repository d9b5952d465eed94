"""What a pipeline sees of a real server (`advisor serve`, embedded: SQLite + a worker subprocess, on
loopback): the webhook receiver of examples/ verifying real signed events, a client generated from the
OpenAPI document by openapi-python-client submitting, waiting and reading a recommendation, and /metrics
parsed by prometheus_client's own parser."""

from __future__ import annotations

import copy
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.api.schemas import SMALL_JOB_EXAMPLE

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
FINISHED = ("succeeded", "failed", "cancelled")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until(check: Callable[[], Any], what: str, timeout: float, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what} after {timeout}s\n" + (log.read_text()[-3000:] if log else "")
        time.sleep(0.3)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BROKER_URL") and not k.startswith("ADVISOR_")}
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **extra})
    return env


class Server:
    def __init__(self, url: str, log: Path) -> None:
        self.url, self.log = url, log
        self.http = httpx.Client(base_url=url, timeout=30)

    def finished(self, job_id: str, timeout: float = 180.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            job = self.http.get(f"/v1/jobs/{job_id}").json()
            return job if job["status"] in FINISHED else None

        return _until(done, f"job {job_id} not finished", timeout, self.log)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("pipelines")
    port = _free_port()
    env = _env(DATA_DIR=str(tmp / "data"), ADVISOR_WEBHOOK_ALLOW="loopback", ADVISOR_WEBHOOK_BACKOFF="0.2",
               ADVISOR_WEBHOOK_POLL_INTERVAL="0.2")
    log = tmp / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)], env=env,
                                cwd=tmp, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    srv = Server(f"http://127.0.0.1:{port}", log)

    def ready() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            return srv.http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _until(ready, "server not ready", 90, log)
        yield srv
    finally:
        srv.http.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_the_example_receiver_verifies_real_events(server: Server, tmp_path: Path) -> None:
    secret = server.http.get("/v1/webhooks/secret").json()["secret"]
    port = _free_port()
    out = tmp_path / "receiver.out"
    env = _env(ADVISOR_WEBHOOK_SECRET=secret, PYTHONPATH=os.pathsep.join([str(ROOT / "client"), str(ROOT)]))
    with open(out, "wb") as fh:
        receiver = subprocess.Popen([sys.executable, str(ROOT / "examples" / "webhook_receiver.py"), "--port",
                                     str(port)], env=env, stdout=fh, stderr=subprocess.STDOUT)
    hook = f"http://127.0.0.1:{port}/advisor"
    try:
        def listening() -> bool:
            assert receiver.poll() is None, out.read_text()
            try:
                return httpx.post(hook, content=b"{}", headers={"webhook-id": "msg_forged",
                                  "webhook-timestamp": str(int(time.time())),
                                  "webhook-signature": "v1,AAAA"}).status_code == 400
            except httpx.HTTPError:
                return False

        _until(listening, "receiver not listening", 30)  # ...and a forged event got 400
        job = server.http.post("/v1/jobs", json={**copy.deepcopy(SMALL_JOB_EXAMPLE), "callback_url": hook}).json()
        assert server.finished(job["id"])["status"] == "succeeded"

        def delivered() -> list[dict[str, Any]] | None:
            items = server.http.get(f"/v1/jobs/{job['id']}/deliveries").json()["items"]
            return items if items and items[0]["state"] == "delivered" else None

        [delivery] = _until(delivered, "event not delivered", 60, server.log)
        assert delivery["last_status_code"] == 204 and delivery["event"] == "job.succeeded"
        lines = [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]
        assert lines[0]["rejected"]  # the forged one
        [event] = [e for e in lines if "type" in e]
        assert event["id"] == delivery["id"] and event["job_id"] == job["id"] and event["type"] == "job.succeeded"
        stored = server.http.get(f"/v1/jobs/{job['id']}/result").json()["recommendations"]
        assert event["recommendations"] == stored
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)


RENAME_LOCAL_D = {
    "d = dict(src_dict)": "src_d = dict(src_dict)",
    "'d.pop(\"'": "'src_d.pop(\"'",
    "in d.items()": "in src_d.items()",
    "additional_properties = d\n": "additional_properties = src_d\n",
}


def _model_template_without_shadowing(where: Path) -> Path:
    """openapi-python-client (0.29) reads a model in `from_dict` through a local named `d`, which a property
    named `d` (our `RecommendationOut.d`, `ModelInfo.d`: the layer width) overwrites. Its documented
    `--custom-template-path` takes the stock model template with that local renamed; nothing else changes."""
    import openapi_python_client

    patched = (Path(openapi_python_client.__file__).parent / "templates" / "model.py.jinja").read_text()
    for old, new in RENAME_LOCAL_D.items():
        assert old in patched, f"the generator's model template changed: {old!r} not found"
        patched = patched.replace(old, new)
    where.mkdir(parents=True, exist_ok=True)
    (where / "model.py.jinja").write_text(patched)
    return where


@pytest.fixture(scope="module")
def generated(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A client package generated by openapi-python-client from the server's own /openapi.json."""
    tool = VENV_BIN / "openapi-python-client"
    if not tool.exists():
        pytest.skip(f"openapi-python-client is not installed beside {sys.executable} (pip install -e '.[dev]')")
    tmp = tmp_path_factory.mktemp("generated")
    spec = tmp / "openapi.json"
    spec.write_text(server.http.get("/openapi.json").text)
    templates = _model_template_without_shadowing(tmp / "templates")
    out = subprocess.run(
        [str(tool), "generate", "--path", str(spec), "--output-path", str(tmp / "advisor_generated"), "--meta", "none",
         "--custom-template-path", str(templates)],
        cwd=tmp, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Unsupported" not in out.stdout + out.stderr, out.stdout[-3000:] + out.stderr[-3000:]
    sys.path.insert(0, str(tmp))
    try:
        yield importlib.import_module("advisor_generated")
    finally:
        sys.path.remove(str(tmp))
        for name in [m for m in sys.modules if m.split(".")[0] == "advisor_generated"]:
            del sys.modules[name]
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_generated_client_submits_waits_and_reads_a_recommendation(server: Server, generated: Any) -> None:
    api = importlib.import_module("advisor_generated.api.jobs")
    models = importlib.import_module("advisor_generated.models")
    for name in ("submit_job", "get_job", "get_recommendation", "get_plot_png", "get_plot_svg", "get_result"):
        importlib.import_module(f"advisor_generated.api.jobs.{name}")
    client = generated.Client(base_url=server.url, raise_on_unexpected_status=True)
    job = api.submit_job.sync(client=client, body=models.JobCreate.from_dict(copy.deepcopy(SMALL_JOB_EXAMPLE)))
    assert isinstance(job, models.JobOut) and job.status == models.JobStatus.QUEUED

    def done() -> Any:
        got = api.get_job.sync(job_id=job.id, client=client)
        return got if got.status.value in FINISHED else None

    final = _until(done, "job not finished", 180, server.log)
    assert final.status == models.JobStatus.SUCCEEDED
    rec = api.get_recommendation.sync(job_id=job.id, client=client, delta=0.05)
    assert isinstance(rec, models.RecommendationOut)
    raw = server.http.get(f"/v1/jobs/{job.id}/recommendation", params={"delta": 0.05}).json()
    assert (rec.fraction, rec.k, rec.d, rec.delta) == (raw["fraction"], raw["k"], raw["d"], 0.05)
    png = api.get_plot_png.sync(job_id=job.id, client=client)
    assert png.payload.read(8) == b"\x89PNG\r\n\x1a\n"
    svg = api.get_plot_svg.sync(job_id=job.id, client=client)
    assert b"<svg" in svg.payload.read()
    missing = api.get_job.sync_detailed(job_id="00000000-0000-0000-0000-000000000000", client=client)
    assert missing.status_code == 404 and isinstance(missing.parsed, models.Problem)
    assert missing.parsed.title == "Job not found"


def test_metrics_scrape_parses_and_agrees_with_the_api(server: Server) -> None:
    job = server.http.post("/v1/jobs", json=copy.deepcopy(SMALL_JOB_EXAMPLE)).json()
    server.finished(job["id"])
    server.http.get(f"/v1/jobs/{job['id']}")
    r = server.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    jobs = {s.labels["status"]: s.value for s in families["advisor_jobs"].samples}
    listed = server.http.get("/v1/jobs", params={"page_size": 200}).json()["items"]
    assert jobs == {st: float(sum(j["status"] == st for j in listed))
                    for st in ("queued", "running", "succeeded", "failed", "cancelled")}
    assert families["advisor_queue_depth"].samples[0].value == jobs["queued"]
    count = {s.labels["status"]: s.value for s in families["advisor_job_duration_seconds"].samples
             if s.name.endswith("_count")}
    assert count["succeeded"] == jobs["succeeded"] >= 1
    stages = {s.labels["stage"]: s.value for s in families["advisor_stage_duration_seconds"].samples
              if s.name.endswith("_count")}
    assert stages["extract"] == jobs["succeeded"]
    latency = [s for s in families["advisor_http_request_duration_seconds"].samples
               if s.name.endswith("_count") and s.labels["route"] == "/v1/jobs/{job_id}"]
    assert latency and sum(s.value for s in latency) >= 1
    assert {s.labels["outcome"] for s in families["advisor_webhook_deliveries"].samples} == {
        "pending", "delivered", "failed"}
    assert families["advisor_up"].samples[0].value == 1.0
