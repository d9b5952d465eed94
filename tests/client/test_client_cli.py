"""The `advisor` client commands and the examples, as a shell pipeline runs them: subprocesses against
the real embedded server, checking exit codes, stdout (exactly one JSON document with --json) and
stderr."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from advisor_client import Advisor

from tests.client.conftest import BROKEN_NPZ

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

SMALL_ARGS = ["--model", "resnet18", "--weights", "random", "--dataset", "digits", "--max-train", "300",
              "--max-test", "100", "--image-size", "32", "--fractions", "0.1,0.5,1", "--seeds", "2"]


SLOW_ARGS = ["--model", "resnet18", "--weights", "random", "--dataset", "digits", "--image-size", "160",
             "--set", "batch_size=16"]
# The client commands as `python -m advisor_client` (what `advisor` runs for them, without importing
# the engine and torch first: seconds less per call); `advisor` itself runs them in the tests marked so.
CLIENT = [sys.executable, "-m", "advisor_client"]
ADVISOR = [sys.executable, "-m", "service.cli"]
Run = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def advisor(child_env: Callable[..., dict[str, str]]) -> Run:
    """The client commands in a subprocess; `server=` sets ADVISOR_URL."""

    def run(*args: str, server: str | None = None, timeout: float = 600, via: list[str] = CLIENT
            ) -> subprocess.CompletedProcess:
        env = child_env(**({"ADVISOR_URL": server} if server else {}))
        return subprocess.run([*via, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)

    return run


def one_json(stdout: str) -> Any:
    """stdout must be exactly one JSON document (json.loads refuses trailing data)."""
    assert stdout.strip(), "nothing on stdout"
    return json.loads(stdout)


def test_advisor_submit_help_documents_the_exit_codes(advisor):
    out = advisor("submit", "--help", via=ADVISOR).stdout  # through the `advisor` command's hook
    for line in ("0  succeeded", "1  the job failed or was cancelled", "2  bad input", "3  timed out",
                 "4  server unreachable"):
        assert line in out


def test_submit_wait_json_succeeds_and_the_other_commands_read_the_job(advisor, server, tmp_path):
    run = advisor("submit", *SMALL_ARGS, "--delta", "0.01", "--delta", "0.05", "--wait", "--timeout", "300",
                  "--json", server=server)
    assert run.returncode == 0, run.stderr
    doc = one_json(run.stdout)
    job_id = doc["job"]["id"]
    assert doc["job"]["status"] == "succeeded" and "error" not in doc
    assert [r["delta"] for r in doc["recommendations"]] == [0.01, 0.05]
    assert f"submitted job {job_id}" in run.stderr and f"job {job_id[:8]}" in run.stderr  # progress: stderr

    with Advisor(server) as client:
        want = client.job(job_id).recommendation(delta=0.02, mode="absolute", criterion="worst_seed")
    rec = advisor("recommend", job_id, "--delta", "0.02", "--mode", "absolute", "--criterion", "worst_seed",
                  "--json", "--server", server)  # --server instead of ADVISOR_URL
    assert rec.returncode == 0, rec.stderr
    assert one_json(rec.stdout) == want.model_dump(mode="json", by_alias=True)
    human = advisor("recommend", job_id, "--delta", "0.02", "--mode", "absolute", "--criterion", "worst_seed",
                    server=server)
    assert f"keep {want.k} of {want.d} neurons" in human.stdout

    status = advisor("status", job_id, "--json", server=server)
    assert status.returncode == 0 and one_json(status.stdout)["job"]["status"] == "succeeded"
    assert advisor("status", job_id, server=server).stdout.startswith(f"{job_id}  succeeded")

    result = advisor("result", job_id, "-o", str(tmp_path / "report.json"), server=server)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "report.json").read_text())["model"]["name"] == "resnet18"

    plot = advisor("plot", job_id, "-o", str(tmp_path / "curve.png"), server=server)
    assert plot.returncode == 0, plot.stderr
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    listed = advisor("jobs", "--status", "succeeded", "--limit", "0", "--json", server=server)
    jobs = one_json(listed.stdout)["jobs"]
    assert job_id in [j["id"] for j in jobs] and all(j["status"] == "succeeded" for j in jobs)
    assert job_id[:8] in advisor("jobs", server=server).stdout  # the table shows short ids

    # Cancelling a finished job is the server's 409: bad input, exit 2, the problem on stdout.
    late = advisor("cancel", job_id, "--json", server=server)
    assert late.returncode == 2 and one_json(late.stdout)["error"]["status"] == 409


def test_submit_without_wait_prints_the_id_and_cancel_cancels(advisor, server):
    run = advisor("submit", *SLOW_ARGS, server=server)
    assert run.returncode == 0, run.stderr
    job_id = run.stdout.strip()
    uuid.UUID(job_id)
    cancel = advisor("cancel", job_id, "--json", server=server)
    assert cancel.returncode == 0 and one_json(cancel.stdout)["job"]["id"] == job_id
    waited = advisor("status", job_id, "--wait", "--timeout", "300", "--json", server=server)
    assert waited.returncode == 1 and one_json(waited.stdout)["job"]["status"] == "cancelled"


def test_a_job_cancelled_while_submit_waits_exits_1(server, child_env):
    proc = subprocess.Popen(
        [*CLIENT, "submit", *SLOW_ARGS, "--wait", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(ADVISOR_URL=server),
        cwd=ROOT,
    )
    try:
        first = proc.stderr.readline() if proc.stderr else ""
        assert first.startswith("advisor: submitted job "), first
        job_id = first.split()[3]
        with Advisor(server) as client:
            client.job(job_id).cancel()
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr
    doc = one_json(stdout)
    assert doc["job"]["status"] == "cancelled" and doc["error"]["kind"] == "job_cancelled"
    assert doc["recommendations"] == []


def test_a_failed_job_exits_1_with_the_servers_error(advisor, server):
    run = advisor("submit", *SMALL_ARGS, "--dataset", f"npz:{BROKEN_NPZ}", "--wait",
                  "--timeout", "300", "--json", "--quiet", server=server)
    assert run.returncode == 1, run.stderr
    doc = one_json(run.stdout)
    assert doc["job"]["status"] == "failed" and doc["job"]["error"]["code"] == "dataset_format"
    assert doc["error"]["kind"] == "job_failed"
    assert not [line for line in run.stderr.splitlines() if line.startswith("job ")]  # --quiet: no bar


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--fractions", "1.5"], "fractions"),
        (["--dataset", "s3://bucket/x"], "dataset.spec"),
        (["--set", "seed=-1"], "seed"),
    ],
)
def test_bad_input_from_the_server_exits_2_naming_the_field(advisor, server, args, field):
    run = advisor("submit", *SMALL_ARGS, *args, "--wait", "--json", server=server)
    assert run.returncode == 2, run.stderr
    err = one_json(run.stdout)["error"]
    assert err["kind"] == "bad_input" and err["status"] == 422
    assert field in [e["field"] for e in err["errors"]]
    lines = run.stderr.splitlines()  # one line per bad field, as `advisor analyze` prints them
    assert len(lines) == len(err["errors"]) and f"advisor: error [{field}]: " in run.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["submit", "--dataset", "digits", "--json"], "required: give --model"),
        (["submit", "--model", "resnet18", "--dataset", "digits", "--body", "/nonexistent.json", "--json"],
         "/nonexistent.json"),
        (["status", "00000000-0000-0000-0000-000000000000", "--json"], "404"),
        (["plot", "00000000-0000-0000-0000-000000000000", "-o", "x.jpg", "--json"], "404"),
    ],
)
def test_bad_input_on_the_client_side_exits_2(advisor, server, args, needle):
    run = advisor(*args, server=server)
    assert run.returncode == 2, run.stderr
    assert needle in one_json(run.stdout)["error"]["message"] and needle in run.stderr


def test_argument_errors_exit_2(advisor):
    run = advisor("submit", "--model", "resnet18", "--dataset", "digits", "--seeds", "many", via=ADVISOR)
    assert run.returncode == 2 and "invalid int value" in run.stderr


def test_timeout_exits_3_and_can_cancel_the_job(advisor, server):
    run = advisor("submit", *SLOW_ARGS, "--wait", "--timeout", "0", "--cancel-on-timeout", "--json",
                  server=server)
    assert run.returncode == 3, run.stderr
    doc = one_json(run.stdout)
    assert doc["error"]["kind"] == "timeout" and doc["error"]["exit_code"] == 3
    assert doc["job"]["status"] == "cancelled" or doc["job"]["cancel_requested"]  # the snapshot after the cancel
    with Advisor(server) as client:
        assert client.job(doc["job"]["id"]).wait(timeout=300, poll_interval=0.3, check=False).status == "cancelled"


def test_upload_prints_the_id_or_the_upload_as_json(advisor, server, tmp_path):
    import hashlib

    import numpy as np

    path = tmp_path / "v.npz"
    np.savez(path, x_train=np.eye(4, dtype=np.float32), y_train=np.arange(4) % 2,
             x_test=np.eye(4, dtype=np.float32), y_test=np.arange(4) % 2)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    run = advisor("upload", str(path), server=server)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{sha}\n" and f"--dataset upload:{sha}" in run.stderr
    run = advisor("upload", str(path), "--json", server=server)
    assert run.returncode == 0 and one_json(run.stdout)["dataset"]["id"] == sha
    (tmp_path / "v.csv").write_text("a\n")
    for bad in (str(tmp_path / "v.csv"), str(tmp_path / "missing.npz")):
        run = advisor("upload", bad, "--json", server=server)
        assert run.returncode == 2 and one_json(run.stdout)["error"]["kind"] == "bad_input", run.stderr


def test_an_unreachable_server_exits_4(advisor, unreachable_url):
    url = unreachable_url
    run = advisor("status", str(uuid.uuid4()), "--json", "--server", url)
    assert run.returncode == 4, run.stderr
    err = one_json(run.stdout)["error"]
    assert err["kind"] == "unreachable" and url in err["message"]
    sub = advisor("submit", *SMALL_ARGS, "--wait", server=url)
    assert sub.returncode == 4 and sub.stdout == "" and "unreachable" in sub.stderr


def test_the_client_commands_run_without_the_service_package(server, tmp_path, child_env):
    """`python -m advisor_client` from client/ alone: the shell commands need neither the service nor torch."""
    code = ("import sys, runpy; sys.argv = ['advisor-client', 'jobs', '--json', '--limit', '1'];"
            "runpy.run_module('advisor_client', run_name='__main__')")
    probe = ("import sys, advisor_client.cli; "
             "bad = [m for m in ('torch', 'service', 'redundancy', 'fastapi') if m in sys.modules];"
             "print(bad)")
    env = child_env(ADVISOR_URL=server, PYTHONPATH=str(ROOT / "client"))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert len(one_json(run.stdout)["jobs"]) == 1
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert imported.stdout.strip() == "[]", imported.stderr


# ---- examples/ ----------------------------------------------------------------------------------
def test_example_pipeline_step(server, small_job, tmp_path, child_env):
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(small_job))
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "pipeline_step.py"), str(job_file), str(tmp_path / "decision.json")],
        capture_output=True, text=True, env=child_env(ADVISOR_URL=server), cwd=tmp_path, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    decision = json.loads((tmp_path / "decision.json").read_text())
    with Advisor(server) as client:
        rec = client.job(decision["job_id"]).recommendation()
    assert (decision["keep_neurons"], decision["of_neurons"], decision["fraction"]) == (rec.k, rec.d, rec.fraction)
    assert (tmp_path / "decision.png").read_bytes()[:4] == b"\x89PNG"
    assert f"keep {rec.k} of {rec.d} neurons" in run.stdout


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
@pytest.mark.parametrize(("max_fraction", "code"), [("1", 0), ("0.0001", 5)])
def test_example_ci_step(server, tmp_path, child_env, max_fraction, code):
    args = SMALL_ARGS
    run = subprocess.run(["bash", str(ROOT / "examples" / "ci_step.sh"), *args], capture_output=True, text=True,
                         env=child_env(ADVISOR_URL=server, MAX_FRACTION=max_fraction), cwd=tmp_path,
                         timeout=600)
    assert run.returncode == code, run.stderr
    line = run.stdout.strip()
    assert line.startswith("keep ") and " neurons: fraction " in line
    if code:
        assert "needs more than 0.0001" in run.stderr


def test_example_ci_step_passes_on_advisors_exit_code(tmp_path, child_env, unreachable_url):
    run = subprocess.run(["bash", str(ROOT / "examples" / "ci_step.sh"), *SMALL_ARGS], capture_output=True,
                         text=True, env=child_env(ADVISOR_URL=unreachable_url), cwd=tmp_path)
    assert run.returncode == 4 and run.stdout == ""


def test_client_is_installable_on_its_own(tmp_path):
    """A wheel of client/ whose only requirements are httpx and pydantic; webhook verification
    (standardwebhooks) is the optional `[webhooks]` extra, `advisor export --mlflow` the `[mlflow]` one."""
    src = tmp_path / "src"  # a copy: the build leaves build/ and *.egg-info behind
    shutil.copytree(ROOT / "client", src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(src)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    wheel = next(tmp_path.glob("advisor_client-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read(next(n for n in zf.namelist() if n.endswith("METADATA"))).decode()
        names = zf.namelist()
    lines = [line.removeprefix("Requires-Dist:").strip() for line in meta.splitlines()
             if line.startswith("Requires-Dist:")]
    name = lambda line: re.match(r"[A-Za-z0-9_.-]+", line).group()  # noqa: E731
    assert sorted(name(x) for x in lines if "extra ==" not in x) == ["httpx", "pydantic"]
    assert sorted(name(x) for x in lines if "extra ==" in x) == ["mlflow-skinny", "standardwebhooks"]
    assert 'extra == "mlflow"' in next(x for x in lines if "mlflow-skinny" in x)
    assert 'extra == "webhooks"' in next(x for x in lines if "standardwebhooks" in x)
    assert "advisor_client/cli.py" in names and "advisor_client/py.typed" in names
    assert not any(n.startswith(("service/", "redundancy/")) for n in names)


def test_client_models_mirror_the_service_schemas():
    """Every field the server sends has a typed place in the client's models (and the same alias)."""
    from advisor_client import models as client_models

    from service.api import schemas

    def aliases(model: Any) -> set[str]:
        return {f.alias or name for name, f in model.model_fields.items()}

    pairs = [(schemas.JobOut, client_models.JobInfo), (schemas.JobList, client_models.JobPage),
             (schemas.RecommendationOut, client_models.Recommendation), (schemas.Problem, client_models.Problem),
             (schemas.ProblemField, client_models.ProblemField), (schemas.JobError, client_models.JobError),
             (schemas.JobLinks, client_models.JobLinks), (schemas.DatasetOut, client_models.DatasetInfo),
             (schemas.DatasetList, client_models.DatasetPage)]
    from redundancy.report import ClassLoss, Fairness

    pairs += [(Fairness, client_models.Fairness), (ClassLoss, client_models.ClassLoss)]
    for server_model, client_model in pairs:
        missing = aliases(server_model) - aliases(client_model)
        assert not missing, f"{client_model.__name__} lacks {sorted(missing)}"
    extra = aliases(client_models.JobInfo) - aliases(schemas.JobOut)
    assert extra <= {"images_done", "images_total", "eta_s"}, extra
