"""Issue 19's bar, through the HTTP API: a text job (`hf:` the packaged all-MiniLM-L6-v2 directory ×
`text:drugreviews.csv`, label `sentiment`) and an embeddings job on an uploaded `.parquet` made from
that job's own MiniLM embeddings both succeed, and their answers agree: the same full-layer accuracy
(1e-6) and the same f* at δ 0.05. The worker is the real one (`execute_job` with `run_analysis`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from redundancy.sources.extraction import Features
from tests.engine.minilm import unpack_minilm
from tests.engine.served import served

pytest.importorskip("all_minilm_l6_v2")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

GRID = {"fractions": [0.05, 0.25, 1.0], "seeds": 2, "deltas": [0.05], "bootstrap": 0, "baselines": [],
        "feature_dtype": "float32"}


def test_text_job_and_uploaded_embeddings_agree_over_http(tmp_path: Path, shared_data_dir: Path) -> None:
    model_dir = unpack_minilm(tmp_path / "minilm")
    reviews = shared_data_dir / "drugreviews.csv"
    with served(tmp_path, f"{tmp_path}:{shared_data_dir}") as srv:
        client, settings = srv.client, srv.settings
        text_id = srv.submit_and_run({
            "model": {"name": f"hf:{model_dir}"},
            "dataset": {"spec": f"text:{reviews}", "label_column": "sentiment"}, **GRID})
        text_rec = client.get(f"/v1/jobs/{text_id}/recommendation", params={"delta": 0.05}).json()
        classes = client.get(f"/v1/jobs/{text_id}/result").json()["dataset"]["classes"]

        # the job's own embeddings, as a vector-database export would hold them: one parquet file
        (meta,) = settings.cache_dir.rglob("meta.json")
        f = Features.load(meta.parent)
        x = np.concatenate([f.x_train, f.x_val, f.x_test]).astype(np.float32)
        y = np.concatenate([f.y_train, f.y_val, f.y_test])
        split = ["train"] * (len(f.y_train) + len(f.y_val)) + ["test"] * len(f.y_test)
        table = pa.table({"embedding": pa.array(list(x), type=pa.list_(pa.float32(), x.shape[1])),
                          "label": [classes[i] for i in y], "split": split})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        files = {"file": ("minilm.parquet", buf.getvalue(), "application/octet-stream")}
        up = client.post("/v1/datasets", files=files)
        assert up.status_code == 201, up.text
        vec_id = srv.submit_and_run({"dataset": {"spec": f"upload:{up.json()['id']}"}, **GRID})
        vec_rec = client.get(f"/v1/jobs/{vec_id}/recommendation", params={"delta": 0.05}).json()
    assert text_rec["d"] == vec_rec["d"] == 384
    assert abs(text_rec["full_accuracy"] - vec_rec["full_accuracy"]) <= 1e-6, (text_rec, vec_rec)
    assert (text_rec["k"], text_rec["fraction"]) == (vec_rec["k"], vec_rec["fraction"])
