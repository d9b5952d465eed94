"""The client and the layer sweep (issue 21): `submit(layers=…)`, `JobInfo.layers`, `Job.layers()`,
`recommendation(layer=…)`, `artifact(layer=…)` and `advisor-client recommend --layer`, against the service app
in process (its requests forwarded by an `httpx.MockTransport`), a fake engine answering a two-layer sweep."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from advisor_client import Advisor, InvalidRequest, LayerResult
from advisor_client import cli as client_cli
from fastapi.testclient import TestClient

from service.core import migrate
from service.core.db import dispose_all
from service.main import create_app
from tests.service.conftest import FakeEngine, Harness, fake_sweep_report, make_settings, small_job


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[Harness, httpx.MockTransport]]:
    settings = make_settings(tmp_path)
    migrate.upgrade(settings.db_url)
    engine = FakeEngine()
    engine.report_fn = fake_sweep_report
    h = Harness(settings, None, engine)  # type: ignore[arg-type]
    seen: list[httpx.Request] = []

    def forward(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        r = h.client.request(req.method, req.url.path, params=req.url.params, content=req.content,
                             headers={k: v for k, v in req.headers.items() if k.lower() != "host"})
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)

    transport = httpx.MockTransport(forward)
    transport.seen = seen  # type: ignore[attr-defined]
    try:
        with TestClient(create_app(settings, queue=h, maintenance=False)) as client:
            h.client = client
            yield h, transport
    finally:
        dispose_all()


def _swept_job(h: Harness, advisor: Advisor) -> Any:
    body = small_job()
    job = advisor.submit(body.pop("model"), body.pop("dataset"), layers=["layer1", "pre_logits"], **body)
    assert h.run(job.id) == "succeeded"
    return advisor.job(job.id)


def test_submit_sends_layers_and_the_answers_name_their_layer(app: Any) -> None:
    h, transport = app
    with Advisor("http://testserver", transport=transport) as advisor:
        job = _swept_job(h, advisor)
        assert job.info.layers == ["layer1", "pre_logits"]
        posted = json.loads(next(r for r in transport.seen if r.method == "POST").content)
        assert posted["layers"] == ["layer1", "pre_logits"]

        layers = job.layers()
        assert [x.layer for x in layers] == ["stage", "head"] and all(isinstance(x, LayerResult) for x in layers)
        assert [x.reference for x in layers] == [False, True] and layers[0].d == 32

        across = job.recommendation(0.05)
        pinned = job.recommendation(0.05, layer="head")
        assert across.layer == "stage" and across.reference_layer == "head"  # fewer neurons of an earlier layer
        assert pinned.layer == "head" and pinned.d == 64 and pinned.reference_layer == "head"
        assert transport.seen[-1].url.params["layer"] == "head"
        raw = h.client.get(f"/v1/jobs/{job.id}/recommendation", params={"delta": 0.05, "layer": "head"}).json()
        assert pinned.model_dump(mode="json", by_alias=True) == raw
        with pytest.raises(InvalidRequest) as bad:
            job.recommendation(0.05, layer="nope")
        assert any(e.field == "layer" for e in bad.value.errors)


def test_artifact_passes_the_layer(app: Any, tmp_path: Path) -> None:
    h, transport = app
    with Advisor("http://testserver", transport=transport) as advisor:
        job = _swept_job(h, advisor)
        with pytest.raises(InvalidRequest) as refused:  # the fake engine kept its reference layer's statistics only
            job.artifact(tmp_path / "a.safetensors", 0.05, layer="stage")
        assert transport.seen[-1].url.params["layer"] == "stage"
        assert any(e.field == "layer" for e in refused.value.errors)


def test_cli_recommend_layer(app: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    h, transport = app
    with Advisor("http://testserver", transport=transport) as advisor:
        job = _swept_job(h, advisor)
    monkeypatch.setattr(client_cli, "Advisor", functools.partial(Advisor, transport=transport))
    assert client_cli.main(["recommend", job.id, "--server", "http://testserver", "--delta", "0.05",
                            "--layer", "head", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["layer"] == "head"
    assert client_cli.main(["recommend", job.id, "--server", "http://testserver", "--delta", "0.05"]) == 0
    assert "of layer stage (δ against the full head)" in capsys.readouterr().out
    assert client_cli.main(["recommend", job.id, "--server", "http://testserver", "--layer", "nope"]) == 2
    assert "layer" in capsys.readouterr().err


def test_cli_submit_layers_flag() -> None:
    parser_args = ["submit", "--model", "resnet18", "--dataset", "digits", "--layers", "sweep"]
    import argparse

    parser = argparse.ArgumentParser()
    client_cli.add_commands(parser.add_subparsers(dest="command", required=True))
    assert client_cli.submit_body(parser.parse_args(parser_args))["layers"] == "sweep"
    names = parser.parse_args([*parser_args[:-1], "layer1, layer4"])
    assert client_cli.submit_body(names)["layers"] == ["layer1", "layer4"]
