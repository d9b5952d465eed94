"""The Python client against the real app: `advisor serve` (embedded: SQLite + a Celery worker
subprocess) on loopback, small jobs with random weights on digits at 32 px."""

from __future__ import annotations

import io
import uuid

import httpx
import pytest
from advisor_client import (
    Advisor,
    Conflict,
    InvalidRequest,
    JobCancelled,
    JobFailed,
    NotFound,
    Recommendation,
    WaitTimeout,
)
from advisor_client.progress import ProgressBar

from redundancy.advice.recommend import intervals_from_summary, recommend
from redundancy.report import Report
from tests.client.conftest import BROKEN_NPZ

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def done_job(server):
    """One small job, run to success once for the module's read-only checks."""
    from service.api.schemas import SMALL_JOB_EXAMPLE

    with Advisor(server) as advisor:
        job = advisor.submit(**SMALL_JOB_EXAMPLE)
        job.wait(timeout=300, poll_interval=0.3)
        yield job.id


def test_submit_wait_with_progress_and_recommendation_from_the_stored_curve(server, small_job):
    out = io.StringIO()
    with Advisor(server) as advisor:
        job = advisor.submit(**small_job)
        assert job.status == "queued" and job.info.request["deltas"] == small_job["deltas"]
        assert job.wait(timeout=300, progress=ProgressBar(out), poll_interval=0.3) is job
        assert job.status == "succeeded" and job.info.finished_at is not None
        lines = out.getvalue().splitlines()
        assert lines and all(line.startswith(f"job {job.id[:8]}") for line in lines)
        assert "succeeded" in lines[-1] and "100.0%" in lines[-1]

        rec = job.recommendation(delta=0.05, mode="absolute", criterion="worst_seed")
        raw = httpx.get(f"{server}/v1/jobs/{job.id}/recommendation",
                        params={"delta": 0.05, "delta_mode": "absolute", "criterion": "worst_seed"}).json()
        assert isinstance(rec, Recommendation)
        assert rec.model_dump(mode="json", by_alias=True) == raw
        report = job.report()
        assert report == httpx.get(f"{server}/v1/jobs/{job.id}/result").json()
        engine = Report.model_validate(report)
        want = recommend(engine.curve, engine.dataset.classes, engine.model.d, 0.05, "absolute", "worst_seed",
                         intervals=intervals_from_summary(engine.summary))
        assert (rec.fraction, rec.k, rec.d, rec.criterion) == (want.fraction, want.k, want.d, "worst_seed")
        assert [r.delta for r in job.recommendations()] == small_job["deltas"]
        assert job.recommendation().delta == small_job["deltas"][0]  # unset: the job's own first δ


def test_plot_png_and_svg(server, done_job, tmp_path):
    with Advisor(server) as advisor:
        job = advisor.job(done_job)
        png = job.plot(tmp_path / "curve.png")
        svg = job.plot(tmp_path / "curve.svg", deltas=[0.02])
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in svg.read_bytes()[:2000]
        with pytest.raises(ValueError, match=r"\.png or \.svg"):
            job.plot(tmp_path / "curve.jpg")


def test_cancel_a_job_and_wait_raises_job_cancelled(server, slow_job):
    with Advisor(server) as advisor:
        job = advisor.submit(**slow_job)
        info = job.cancel()
        assert info.cancel_requested or info.status == "cancelled"
        with pytest.raises(JobCancelled) as caught:
            job.wait(timeout=300, poll_interval=0.3)
        assert caught.value.job.status == "cancelled" and job.status == "cancelled"
        with pytest.raises(Conflict) as no_result:
            job.recommendation()
        assert no_result.value.status == 409


def test_a_failed_job_raises_job_failed_with_the_servers_error(server, small_job):
    small_job["dataset"] = {"spec": f"npz:{BROKEN_NPZ}"}
    with Advisor(server) as advisor:
        job = advisor.submit(**small_job)
        with pytest.raises(JobFailed) as caught:
            job.wait(timeout=300, poll_interval=0.3)
        err = caught.value.job.error
        assert err is not None and err.code == "dataset_format" and err.field == "dataset.spec"
        assert "dataset_format" in str(caught.value)
        assert job.wait(timeout=10, check=False).status == "failed"  # check=False: no exception


def test_wait_times_out_and_the_job_goes_on(server, slow_job):
    with Advisor(server) as advisor:
        job = advisor.submit(**slow_job)
        with pytest.raises(WaitTimeout) as caught:
            job.wait(timeout=0)
        assert caught.value.job.status in ("queued", "running") and isinstance(caught.value, TimeoutError)
        job.cancel()
        assert job.wait(timeout=300, poll_interval=0.3, check=False).status == "cancelled"


def test_jobs_iterates_every_page_newest_first(server, small_job):
    with Advisor(server) as advisor:
        mine = [advisor.submit(**{**small_job, "seeds": 3}).id for _ in range(3)]
        for job_id in mine:
            advisor.job(job_id).cancel()
        for job_id in mine:  # a running one ends cancelled at its next checkpoint
            assert advisor.job(job_id).wait(timeout=300, poll_interval=0.3, check=False).status == "cancelled"
        listed = [j.id for j in advisor.jobs(page_size=2)]
        everything = httpx.get(f"{server}/v1/jobs", params={"page_size": 200}).json()
        assert everything["next_page_token"] is None
        assert listed == [j["id"] for j in everything["items"]] and len(set(listed)) == len(listed)
        assert listed[:3] == list(reversed(mine))
        cancelled = list(advisor.jobs(status="cancelled", page_size=1))
        assert {j.id for j in cancelled} >= set(mine) and all(j.status == "cancelled" for j in cancelled)


def test_idempotency_key_against_the_server(server, small_job):
    key = f"test-{uuid.uuid4()}"
    with Advisor(server) as advisor:
        a = advisor.submit(**small_job, idempotency_key=key)
        b = advisor.submit(**small_job, idempotency_key=key)
        assert a.id == b.id
        with pytest.raises(Conflict) as other_body:
            advisor.submit(**{**small_job, "seeds": 3}, idempotency_key=key)
        assert other_body.value.status == 409
        a.cancel()


def test_server_errors_become_typed_exceptions_with_problem_fields(server):
    with Advisor(server) as advisor:
        with pytest.raises(InvalidRequest) as bad:
            advisor.submit("resnet18", "digits", fractions=[1.5])
        assert bad.value.status == 422 and "fractions" in bad.value.fields
        assert bad.value.type.endswith("validation-error") and bad.value.title
        with pytest.raises(NotFound) as missing:
            advisor.job(str(uuid.uuid4()))
        assert missing.value.status == 404


def test_artifact_downloads_a_loadable_subset_head(server, done_job, tmp_path):
    from redundancy.deploy import load_artifact

    with Advisor(server) as advisor:
        job = advisor.job(done_job)
        job.artifact(tmp_path / "head.safetensors", delta=0.05)
        rec = job.recommendation(delta=0.05)
    art = load_artifact(tmp_path / "head.safetensors")
    assert art.indices.shape == (rec.k,) and art.weight.shape[0] == rec.k


def test_upload_list_get_and_delete_an_embeddings_file(server, tmp_path):
    """Through uvicorn: the multipart body streams in for real; the id is the file's sha256."""
    import hashlib

    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "vectors.npz"
    np.savez(path, x_train=rng.normal(size=(40, 8)).astype(np.float32), y_train=np.arange(40) % 2,
             x_test=rng.normal(size=(20, 8)).astype(np.float32), y_test=np.arange(20) % 2)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with Advisor(server) as advisor:
        up = advisor.upload(path)
        assert (up.id, up.sha256, up.spec, up.filename) == (sha, sha, f"upload:{sha}", "vectors.npz")
        assert up.size_bytes == path.stat().st_size and up.format == "npz"
        assert advisor.upload(path) == up  # the same file: the same upload
        assert advisor.dataset(sha) == up and up in list(advisor.datasets(page_size=1))
        (tmp_path / "v.csv").write_text("a,b\n")
        with pytest.raises(InvalidRequest) as bad:
            advisor.upload(tmp_path / "v.csv")
        assert bad.value.status == 422 and "file" in bad.value.fields
        advisor.delete_dataset(sha)
        with pytest.raises(NotFound):
            advisor.dataset(sha)
