"""`advisor analyze --export` of a retrieval analysis (`export_artifacts`): one head-less artifact per
recommendation, whose kept dimensions are the recommended k and reproduce its curve point's score; a head
is refused by name (`attach`, `logits`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch import nn

from redundancy import AnalysisConfig, Runtime
from redundancy.deploy import ArtifactError, attach, export_artifacts, load_artifact
from redundancy.pipeline import run_analysis
from redundancy.probing.retrieval import RetrievalScorer


def test_export_of_a_retrieval_analysis_keeps_dimensions_not_heads(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((5, 20)) * 2
    y_train, y_test = rng.integers(0, 5, 200), rng.integers(0, 5, 50)
    x_train = (centres[y_train] + rng.standard_normal((200, 20))).astype(np.float32)
    x_test = (centres[y_test] + rng.standard_normal((50, 20))).astype(np.float32)
    np.savez(tmp_path / "v.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    config = AnalysisConfig.model_validate({
        "dataset": {"spec": f"embeddings:{tmp_path / 'v.npz'}"}, "task": "retrieval", "metric": "recall@10",
        "fractions": [0.25, 0.5, 1.0], "seeds": 2, "deltas": [0.05, 0.2], "bootstrap": 0, "baselines": [],
        "feature_dtype": "float32"})
    analysis = run_analysis(config, Runtime(cache_dir=tmp_path / "c", work_dir=tmp_path / "w", data_root=tmp_path))
    paths = export_artifacts(analysis.report, tmp_path / "out", analysis.stats, analysis.model_facts)
    assert len(paths) == 2
    for path, rec in zip(paths, analysis.report.recommendations, strict=True):
        art = load_artifact(path)
        assert art.k == rec.k and not art.has_head and art.metadata["subset"]["metric"] == "recall@10"
        scorer = RetrievalScorer(x_train, y_train, x_test, y_test, "recall@10")
        assert scorer.subset(art.indices).accuracy == pytest.approx(art.metadata["subset"]["score"], abs=1e-12)
    with pytest.raises(ArtifactError) as err:
        art.logits(x_test)
    assert err.value.field == "weight"
    with pytest.raises(ArtifactError, match="reducer"):
        attach(nn.Linear(20, 3), art)
