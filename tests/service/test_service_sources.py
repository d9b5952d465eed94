"""Issue 19 at the API: the catalog names the model sources; a bad embeddings file on the server's
disk is a 422 at submission naming what is wrong; a good one, with the model omitted, is accepted."""

from __future__ import annotations

import numpy as np


def test_catalog_lists_precomputed_and_hf_sources(client):
    items = {m["name"]: m for m in client.get("/v1/catalog/models", params={"q": "*"}).json()["items"]
             if m["source"] in ("precomputed", "hf")}
    assert items["precomputed"]["available"] is True
    assert items["hf:<name or local directory>"]["available"] is True  # transformers is installed here
    assert "text:" in items["hf:<name or local directory>"]["detail"]


def test_submission_checks_the_embeddings_header(harness):
    root = harness.settings.allowed_roots[0]
    root.mkdir(parents=True, exist_ok=True)
    good, bad = root / "good.npz", root / "bad.npz"
    x, y = np.zeros((20, 4), np.float32), np.arange(20) % 2
    np.savez(good, x_train=x, y_train=y, x_test=x, y_test=y)
    np.savez(bad, x_train=x, y_train=y, x_test=np.zeros((20, 5), np.float32), y_test=y)
    r = harness.client.post("/v1/jobs", json={"dataset": {"spec": f"embeddings:{bad}"}})
    assert r.status_code == 422, r.text
    assert "x_train has width 4 but x_test has width 5" in r.text and "dataset.spec" in r.text
    r = harness.client.post("/v1/jobs", json={"dataset": {"spec": f"embeddings:{good}"}, "fractions": [0.5, 1]})
    assert r.status_code in (200, 201, 202), r.text
    r = harness.client.post("/v1/jobs", json={"model": {"name": "resnet18"}, "dataset": {"spec": f"embeddings:{good}"}})
    assert r.status_code == 422 and "must be 'precomputed'" in r.text
