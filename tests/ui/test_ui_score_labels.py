"""The job page names a retrieval job's score by its metric (issue 20, must-have 4): `scoreLabels` in ui.js,
run in node (skipped where node is absent), and the job page's elements it writes to."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

UI_JS = Path(__file__).resolve().parents[2] / "service" / "api" / "ui" / "static" / "ui.js"


def _labels(metric: str | None) -> dict[str, str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    source = UI_JS.read_text()
    match = re.search(r"^function scoreLabels\(metric\) \{.*?^\}$", source, re.S | re.M)
    assert match, "ui.js has no scoreLabels(metric)"
    script = f"{match.group(0)}\nprocess.stdout.write(JSON.stringify(scoreLabels({json.dumps(metric)})));"
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=60, check=True)
    return dict(json.loads(out.stdout))


@pytest.mark.parametrize("metric, name", [("ndcg@10", "nDCG@10"), ("recall@10", "recall@10"), ("map@10", "mAP@10"),
                                          ("top10_overlap", "top-10 overlap")])
def test_a_retrieval_job_is_labelled_by_its_metric_and_query_deciles(metric: str, name: str) -> None:
    lab = _labels(metric)
    assert lab["score"] == lab["title"] == name
    assert lab["worst"] == "worst decile of queries" and "accuracy" not in json.dumps(lab)


@pytest.mark.parametrize("metric", ["accuracy", None])
def test_a_classification_job_keeps_accuracy_and_classes(metric: str | None) -> None:
    lab = _labels(metric)
    assert lab["score"] == "accuracy" and lab["worst"] == "worst class" and lab["group"] == "class"


def test_the_job_page_has_the_labelled_elements(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    for var in ("DATABASE_URL", "BROKER_URL", "ADVISOR_API_KEYS"):
        monkeypatch.delenv(var, raising=False)
    from service.core.config import Settings
    from service.main import create_app

    class _NoQueue:
        def enqueue(self, job_id: str) -> None:
            pass

    html = TestClient(create_app(Settings(), queue=_NoQueue(), maintenance=False)).get(
        "/ui/jobs/6f1c2b8e-3f7a-4d1e-9c55-2b0c7d1e9a01").text
    for ident in ("curve-title", "curve-hint", "hurt-title", "hurt-group"):
        assert f'id="{ident}"' in html and f'"#{ident}"' in UI_JS.read_text(), ident
