"""`GET /v1/jobs/{id}/artifact?method=…&format=…` (issue 22): every method the job ran, as safetensors or
ONNX; the ONNX graph run in onnxruntime gives the safetensors head's logits; a method the job did not run,
or an unknown format, is a 422 naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from redundancy.config import AnalysisConfig
from redundancy.deploy import load_artifact
from tests.service.conftest import fake_rows, small_job
from tests.service.test_service_verdict import report_with_baselines

ort = pytest.importorskip("onnxruntime")


@pytest.fixture
def job(harness: Any) -> dict[str, Any]:
    harness.engine.report_fn = report_with_baselines
    job = harness.submit(small_job(fractions=[0.1, 0.25, 0.5, 1.0], deltas=[0.05]))
    harness.run_all()
    return job


@pytest.mark.parametrize("method", ["random_subset", "first_k", "pca"])
def test_each_method_as_safetensors_and_onnx(harness: Any, job: dict[str, Any], method: str, tmp_path: Path) -> None:
    url = f"/v1/jobs/{job['id']}/artifact"
    st = harness.client.get(url, params={"delta": 0.05, "method": method})
    assert st.status_code == 200, st.text
    path = tmp_path / "a.safetensors"
    path.write_bytes(st.content)
    art = load_artifact(path)
    rec = harness.client.get(f"/v1/jobs/{job['id']}/recommendation", params={"delta": 0.05}).json()
    assert art.k == next(m["k"] for m in rec["methods"] if m["method"] == method)
    assert art.method == method and (art.projection is not None) == (method == "pca")
    ox = harness.client.get(url, params={"delta": 0.05, "method": method, "format": "onnx"})
    assert ox.status_code == 200 and ox.headers["etag"] != st.headers["etag"]
    assert ox.headers["content-disposition"].endswith('.onnx"')
    x, _ = fake_rows(AnalysisConfig.model_validate(small_job()))
    session = ort.InferenceSession(ox.content, providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"features": x.astype(np.float32)})[0]
    want = art.logits(x)
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    assert (got.argmax(1) == want.argmax(1)).all()
    card = harness.client.get(f"{url}/card", params={"delta": 0.05, "method": method}).json()
    assert card["subset"]["method"] == method


@pytest.mark.parametrize("params, field", [
    ({"method": "random_projection"}, "method"), ({"method": "svd"}, "method"), ({"format": "pt"}, "format"),
])
def test_refused_method_or_format_names_the_field(harness: Any, job: dict[str, Any], params: dict, field: str) -> None:
    r = harness.client.get(f"/v1/jobs/{job['id']}/artifact", params=params)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    assert field in r.text
