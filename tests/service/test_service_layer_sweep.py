"""The layer sweep at the service's edge (issue 21): a sweep whose statistics cannot fit is refused at
submission, naming `layers` and the bytes; one that fits is accepted (the fake engine runs it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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
