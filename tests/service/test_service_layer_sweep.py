"""The layer sweep at the service's edge (issue 21): a sweep whose statistics cannot fit is refused at
submission, naming `layers` and the bytes; one that fits is accepted (the fake engine runs it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from redundancy.preflight import layer_stats_bytes
from redundancy.sources.models.layers import widths_without_weights
from service.main import create_app
from tests.service.conftest import Harness, small_job

# resnet18's default sweep: its four stages' outputs (64, 128, 256, 512) and pre_logits (512)
RESNET18_SWEEP = [64, 64, 128, 256, 512, 512]


def test_weightless_widths_are_the_models_own() -> None:
    assert widths_without_weights("resnet18", None, 32) == RESNET18_SWEEP
    assert widths_without_weights("resnet18", ["layer2", "pre_logits"], None) == [128, 512]


def _harness(settings_factory: Any, tmp_path: Path, engine: Any, budget: int) -> tuple[TestClient, Harness]:
    settings = settings_factory(tmp_path, max_layer_stats_bytes=budget)
    h = Harness(settings, None, engine)  # type: ignore[arg-type]
    client = TestClient(create_app(settings, queue=h, maintenance=False))
    h.client = client
    return client, h


@pytest.mark.parametrize("layers", ["sweep", ["layer1", "layer4", "pre_logits"]])
def test_a_sweep_over_budget_is_refused_at_submission_naming_the_bytes(
    tmp_path: Path, settings_factory: Any, engine: Any, layers: Any
) -> None:
    need = layer_stats_bytes(RESNET18_SWEEP if layers == "sweep" else [64, 512, 512])
    client, h = _harness(settings_factory, tmp_path, engine, budget=need - 1)
    with client:
        r = client.post("/v1/jobs", json=small_job(layers=layers))
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        [err] = [e for e in body["errors"] if e["field"] == "layers"]
        numbers = [int(x.replace(",", "")) for x in re.findall(r"\d[\d,]*\d", err["reason"])]
        assert need in numbers and need - 1 in numbers, err["reason"]
        assert client.get("/v1/jobs").json()["items"] == []  # nothing was queued
        assert h.engine.calls == 0


def test_a_sweep_within_budget_is_accepted(tmp_path: Path, settings_factory: Any, engine: Any) -> None:
    client, _h = _harness(settings_factory, tmp_path, engine, budget=layer_stats_bytes(RESNET18_SWEEP))
    with client:
        r = client.post("/v1/jobs", json=small_job(layers="sweep"))
        assert r.status_code in (201, 202), r.text


def _sweep_analysis(config: Any) -> Any:
    """The fake sweep with joined statistics over both layers' columns (32 + 64), as the engine keeps them."""
    from redundancy.pipeline import Analysis
    from redundancy.sources.stats import GramStats
    from tests.service.conftest import CLASSES, FAKE_DATA_CONFIG, FAKE_WEIGHTS_SHA, fake_rows, fake_sweep_report

    x, y = fake_rows(config)
    joined = np.concatenate([x[:, :32] * 2.0, x], axis=1)
    return Analysis(fake_sweep_report(config), GramStats.from_features(joined, y, len(CLASSES)),
                    (FAKE_WEIGHTS_SHA, dict(FAKE_DATA_CONFIG)))


def test_a_head_on_any_swept_layer(harness: Any, tmp_path: Path) -> None:
    from redundancy.deploy import build_artifact, layer_report, layer_stats, load_artifact
    from redundancy.report import Recommendation, Report
    from tests.service.conftest import FAKE_DATA_CONFIG, FAKE_WEIGHTS_SHA

    harness.engine.report_fn = _sweep_analysis
    job = harness.submit()
    assert harness.run(job["id"]) == "succeeded"
    url = f"/v1/jobs/{job['id']}"
    default = harness.client.get(f"{url}/artifact/card", params={"delta": 0.05})
    head = harness.client.get(f"{url}/artifact", params={"delta": 0.05, "layer": "head"})
    unknown = harness.client.get(f"{url}/artifact", params={"delta": 0.05, "layer": "nope"})
    assert default.status_code == 200 and head.status_code == 200, (default.text, head.text)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "layer"
    card = default.json()["model"]  # the answer across layers keeps neurons of `stage`, the earlier layer
    assert (card["layer"], card["d"], card["intermediates_index"]) == ("stage", 32, 0)
    assert "head" in head.headers["content-disposition"]

    path = tmp_path / "head.safetensors"
    path.write_bytes(head.content)
    got = load_artifact(path)
    report = Report.model_validate(harness.client.get(f"{url}/result").json())
    rec = Recommendation.model_validate(
        harness.client.get(f"{url}/recommendation", params={"delta": 0.05, "layer": "head"}).json())
    stats = _sweep_analysis(report.config).stats
    view = layer_report(report, "head")
    want = build_artifact(view, layer_stats(view, stats), rec, weights_sha256=FAKE_WEIGHTS_SHA,
                          data_config=dict(FAKE_DATA_CONFIG))
    assert got.d == 64 and np.array_equal(got.indices, want.indices)
    assert np.allclose(got.weight, want.weight, rtol=0, atol=1e-12)
