"""Issue 9, part 3: secure by default. Paths confined to the data roots, identical answers outside
them; operational details behind a key; `advisor serve` refuses an open non-loopback listener."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from service.cli import is_loopback, open_serve_refusal
from service.core.paths import OUTSIDE, confinement_error
from service.main import create_app

ROOT = Path(__file__).resolve().parents[2]


# ---- the pure rule ------------------------------------------------------------------------------

def test_confinement_rule(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.npz").write_bytes(b"x")
    (root / "in.npz").symlink_to(root / "sub" / "a.npz")
    (root / "out").symlink_to("/etc")
    os.mkfifo(root / "fifo")
    roots = (root.resolve(),)

    def outside(raw: str) -> str:
        return f"{OUTSIDE}: {raw!r}; allowed roots: {roots[0]} (the server's ADVISOR_DATA_ROOTS)"

    assert confinement_error(str(root / "sub" / "a.npz"), roots) is None
    assert confinement_error(str(root / "in.npz"), roots) is None, "a symlink inside the root is fine"
    assert confinement_error(str(root / "missing.npz"), roots) is None, "inside, not there yet: the engine says"
    missing = str(root / "missing.npz")
    assert confinement_error(missing, roots, must_exist=True) == f"{missing!r} does not exist", "at submission"
    assert confinement_error(str(root / "sub"), roots) is None
    assert confinement_error(str(root / "out" / "passwd"), roots) == outside(str(root / "out" / "passwd"))
    dotdot = str(root / "sub" / ".." / "a.npz")
    assert confinement_error(dotdot, roots) == f"{dotdot!r}: `..` is not allowed in a path"
    assert confinement_error(str(root / "fifo"), roots) == f"{str(root / 'fifo')!r} is not a regular file or directory"
    relative = confinement_error("sub/a.npz", roots)
    assert relative is not None and relative.startswith(f"{OUTSIDE}: 'sub/a.npz' is relative; it must be an absolute")
    for raw in ("/etc/passwd", "/proc/self", "/dev/zero", "/nonexistent/x.npz", str(tmp_path)):
        assert confinement_error(raw, roots) == outside(raw), raw
    sibling = str(root) + "-sibling/a.npz"
    assert confinement_error(sibling, roots) == outside(sibling), "a prefix is not a parent"
    hidden = confinement_error("/etc/passwd", roots, show_roots=False)
    assert hidden is not None and str(root) not in hidden and "ADVISOR_DATA_ROOTS" in hidden


# ---- at the API ---------------------------------------------------------------------------------

def _post(client, job_body, **over):
    return client.post("/v1/jobs", json=job_body(**over))


def _same_answer(responses, paths) -> dict:
    """The same answer for every path, existing or not, but for the path itself, which it names."""
    bodies = [(r.status_code, r.headers["content-type"], r.text.replace(p, "PATH"))
              for r, p in zip(responses, paths, strict=True)]
    assert all(b == bodies[0] for b in bodies), bodies
    status, ctype, _ = bodies[0]
    body = responses[0].json()
    assert status == 422 and ctype == "application/problem+json"
    assert body["errors"][0]["reason"].startswith(f"{OUTSIDE}: {paths[0]!r}") and body["code"] == "path_not_allowed"
    return body


def test_dataset_paths_outside_the_roots_get_one_identical_422(harness, job_body):
    specs = ["npz:/etc/passwd", "imagefolder:/proc/self", "npz:/nonexistent/x.npz", "npz:/dev/zero"]
    responses = []
    for spec in specs:
        scheme = spec.split(":")[0]
        # the same field and the same answer whatever the path is, exists or not
        responses.append(_post(harness.client, job_body, dataset={"spec": f"{scheme}:{spec.split(':', 1)[1]}"}))
    npz = [(r, s.split(":", 1)[1]) for r, s in zip(responses, specs, strict=True) if s.startswith("npz:")]
    body = _same_answer([r for r, _ in npz], [p for _, p in npz])
    assert body["errors"][0]["field"] == "dataset.spec"
    folder = responses[1]
    assert folder.status_code == 422 and folder.json()["errors"][0]["reason"].startswith(OUTSIDE)
    assert harness.sent == [] and harness.client.get("/v1/jobs").json()["items"] == []


def test_weights_symlink_out_of_the_root_is_refused_like_a_missing_file(harness, job_body, settings):
    ckpt_dir = settings.checkpoints_dir
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    (ckpt_dir / "shadow.pth").symlink_to("/etc/shadow")
    tries = [str(ckpt_dir / "shadow.pth"), "/etc/shadow.pth", "/nonexistent/model.pth"]
    _same_answer([_post(harness.client, job_body, model={"name": "resnet18", "weights": w}) for w in tries], tries)


def test_paths_under_a_root_are_accepted(harness, job_body, settings, tmp_path):
    ckpt = settings.checkpoints_dir / "mine.safetensors"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_bytes(b"")
    assert _post(harness.client, job_body, model={"name": "resnet18", "weights": str(ckpt)}).status_code == 202
    spec = f"npz:{settings.data_path}/datasets/later.npz"  # not there: refused now, not by the worker later
    assert _post(harness.client, job_body, dataset={"spec": spec}).json()["code"] == "dataset_not_found"


def test_the_worker_checks_again_a_path_swapped_after_submission(harness, job_body, settings, engine):
    """Accepted while it was a file under the root; a symlink to /etc/passwd by the time the worker
    runs: the worker refuses it as the API would, without opening it (the engine is never called)."""
    data = settings.data_path / "datasets" / "mine.npz"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_bytes(b"")
    job = harness.submit(job_body(dataset={"spec": f"npz:{data}"}))
    data.unlink()
    data.symlink_to("/etc/passwd")
    assert harness.run(job["id"]) == "failed"
    assert engine.calls == 0
    error = harness.client.get(f"/v1/jobs/{job['id']}").json()["error"]
    assert error == {"code": "path_not_allowed", "field": "dataset.spec",
                     "message": f"Invalid value for `dataset.spec`: {OUTSIDE}: {str(data)!r}; allowed roots: "
                     f"{settings.data_path} (the server's ADVISOR_DATA_ROOTS)"}


def test_data_roots_is_a_setting(tmp_path, settings_factory, recording_queue, job_body):
    extra = tmp_path / "shared-data"
    extra.mkdir()
    settings = settings_factory(tmp_path, data_roots=f"{extra},{tmp_path / 'other'}")
    with TestClient(create_app(settings, queue=recording_queue, maintenance=False)) as c:
        (extra / "a.npz").write_bytes(b"")
        settings.data_path.mkdir(parents=True, exist_ok=True)
        (settings.data_path / "a.npz").write_bytes(b"")
        assert _post(c, job_body, dataset={"spec": f"npz:{extra}/a.npz"}).status_code == 202
        inside_data_dir = f"npz:{settings.data_path}/a.npz"  # no longer a root once roots are set
        reason = _post(c, job_body, dataset={"spec": inside_data_dir}).json()["errors"][0]["reason"]
        assert reason.startswith(OUTSIDE) and f"allowed roots: {extra}, {tmp_path / 'other'}" in reason


def test_the_engine_cli_stays_unconfined(tmp_path):
    """`advisor analyze` is the user's own machine: no roots apply (the path is read, and not found)."""
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", "analyze", "--model", "resnet18", "--weights", "random",
         "--dataset", f"npz:{tmp_path}/absent.npz"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode != 0 and OUTSIDE not in out.stderr + out.stdout
    assert "absent.npz" in out.stderr + out.stdout


# ---- operational details need a key ------------------------------------------------------------

def test_readyz_without_a_key_says_only_ready_or_not(tmp_path, settings_factory, recording_queue):
    settings = settings_factory(tmp_path, api_keys="k1")
    with TestClient(create_app(settings, queue=recording_queue, maintenance=False)) as c:
        anon = c.get("/readyz")
        assert anon.status_code == 200 and anon.json() == {"status": "ok", "checks": {}}
        keyed = c.get("/readyz", headers={"X-API-Key": "k1"}).json()
        assert keyed["checks"]["database"].startswith("ok")
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"X-API-Key": "k1"}).status_code == 200


def test_readyz_failure_hides_the_database_address_without_a_key(tmp_path, recording_queue):
    from service.core.config import Settings
    from service.core.db import dispose_all

    settings = Settings(data_dir=tmp_path / "d", broker_url=None, maintenance_interval=0, api_keys="k1",
                        database_url="postgresql+psycopg://postgres@127.0.0.1:1/advisor")
    try:
        with TestClient(create_app(settings, queue=recording_queue, maintenance=False)) as c:
            anon = c.get("/readyz")
            assert anon.status_code == 503 and "checks" not in anon.json()
            assert "127.0.0.1" not in anon.text and ":1" not in anon.text
            keyed = c.get("/readyz", headers={"X-API-Key": "k1"})
            assert keyed.status_code == 503 and keyed.json()["checks"]["database"].startswith("error")
    finally:
        dispose_all()


def test_metrics_public_setting(tmp_path, settings_factory, recording_queue):
    settings = settings_factory(tmp_path, api_keys="k1", metrics_public=True)
    with TestClient(create_app(settings, queue=recording_queue, maintenance=False)) as c:
        assert c.get("/metrics").status_code == 200
        assert c.get("/readyz").json()["checks"]["database"].startswith("ok")
        assert c.get("/v1/jobs").status_code == 401, "the API itself still needs a key"


# ---- `advisor serve` --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("example.org", False)],
)
def test_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_serve_refusal_rule():
    assert open_serve_refusal("0.0.0.0", has_keys=False, insecure=False)
    assert open_serve_refusal("0.0.0.0", has_keys=True, insecure=False) is None
    assert open_serve_refusal("0.0.0.0", has_keys=False, insecure=True) is None
    assert open_serve_refusal("127.0.0.1", has_keys=False, insecure=False) is None


def _serve(tmp_path: Path, *extra: str, keys: str = "") -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVISOR_")}
    env.update(PYTHONPATH=str(ROOT), DATA_DIR=str(tmp_path / "data"), ADVISOR_API_KEYS=keys)
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--no-worker", "--port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )


def test_serve_refuses_a_public_address_without_keys(tmp_path):
    proc = _serve(tmp_path, "--host", "0.0.0.0")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "refusing to listen on 0.0.0.0 without API keys" in err
    assert "--insecure-no-auth" in err


def test_insecure_no_auth_is_announced_loudly(tmp_path):
    proc = _serve(tmp_path, "--host", "0.0.0.0", "--insecure-no-auth")
    try:
        lines = []
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if "NO AUTHENTICATION" in line or len(lines) > 50:
                break
        assert any("NO AUTHENTICATION on 0.0.0.0" in line for line in lines), lines
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---- deployment files -------------------------------------------------------------------------

def test_compose_requires_an_api_key():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["x-advisor-env"]
    assert env["ADVISOR_API_KEYS"].startswith("${ADVISOR_API_KEYS:?"), "compose must refuse to start without a key"


def test_the_image_runs_as_a_non_root_user():
    users = [line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
