"""The layer picker on a sweep's job page (issue 21), without a browser: the page carries the picker in the
δ form (hidden until a sweep's layers fill it), and ui.js sends the picked layer as `layer=` on the same
recommendation request the δ controls re-ask; the browser test drives it on a real sweep."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

UI_JS = Path(__file__).resolve().parents[2] / "service" / "api" / "ui" / "static" / "ui.js"
JOB = "/ui/jobs/6f1c2b8e-3f7a-4d1e-9c55-2b0c7d1e9a01"


class _NoQueue:
    def enqueue(self, job_id: str) -> None:
        pass


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    for var in ("DATABASE_URL", "BROKER_URL", "ADVISOR_API_KEYS"):
        monkeypatch.delenv(var, raising=False)
    from service.core.config import Settings
    from service.main import create_app

    return TestClient(create_app(Settings(), queue=_NoQueue(), maintenance=False))


def test_the_job_page_has_a_hidden_layer_picker_in_the_delta_form(client: TestClient) -> None:
    html = client.get(JOB).text
    form = re.search(r'<form id="delta-form".*?</form>', html, re.S)
    assert form is not None
    picker = re.search(r'<span id="layer-picker" hidden>.*?</span>', form.group(0), re.S)
    assert picker is not None, "the picker is in the δ form, hidden until a sweep fills it"
    assert re.search(r'<select id="layer"><option value="">best across layers</option></select>', picker.group(0))


def test_ui_js_asks_the_recommendation_with_the_picked_layer() -> None:
    js = UI_JS.read_text()
    refresh = re.search(r"const refreshRecommendation = async \(\) => \{(.*?)\n  \};", js, re.S)
    assert refresh is not None
    body = refresh.group(1)
    assert 'q.set("layer", $("#layer").value)' in body and "/recommendation?${q}" in body
    assert '$("#layer").addEventListener("change", refreshRecommendation)' in js
    fill = re.search(r"function fillLayers\(report\) \{(.*?)\n\}", js, re.S)
    assert fill is not None and '$("#layer-picker").hidden = false' in fill.group(1)
    assert "layers.map((x) =>\n    el(\"option\", { value: x.layer }" in fill.group(1)
    # the chart follows the answer's layer: its own summary, not the reference layer's
    assert "drawCurve($(\"#curve\"), layerSummary(report, rec.layer), rec)" in js


SWEEP_JOB = {
    "model": {"name": "resnet18", "weights": "random"},
    "dataset": {"spec": "digits", "max_train": 200, "max_test": 100},
    "image_size": 32, "layers": ["layer2", "layer4", "pre_logits"], "fractions": [0.25, 0.5, 1.0], "seeds": 2,
    "deltas": [0.05], "bootstrap": 0, "baselines": [],
}


@pytest.mark.browser
def test_the_picker_re_asks_the_answer_for_the_picked_layer(serve, browser) -> None:  # type: ignore[no-untyped-def]
    from tests.ui.test_ui_browser import _answer_text, _by, _select, _wait, _wait_for_result

    server = serve()
    driver = browser
    with server.client() as api:
        job = api.post("/v1/jobs", json=SWEEP_JOB).json()
        driver.get(f"{server.base}/ui/jobs/{job['id']}")
        _wait_for_result(driver, server)
        _wait(driver).until(lambda d: d.find_element(*_by("#layer-picker")).is_displayed())
        offered = [o.get_attribute("value") for o in driver.find_elements(*_by("#layer option"))]
        assert offered == ["", "layer2", "layer4", "pre_logits"]
        for layer in ("layer2", "pre_logits", ""):
            want = api.get(f"/v1/jobs/{job['id']}/recommendation",
                           params={"delta": 0.05, **({"layer": layer} if layer else {})}).json()
            _select(driver, "#layer", layer)
            _wait(driver).until(lambda d, w=want: d.find_element(*_by("#answer")).text == _answer_text(w)
                                and f"Layer {w['layer']}." in d.find_element(*_by("#answer-note")).text)
            assert driver.find_element(*_by("#answer")).get_attribute("data-k") == str(want["k"])
