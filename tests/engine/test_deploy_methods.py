"""Artifacts for every method, and as ONNX, on real data: the bundled ImageNet EfficientNet-Lite0 on real
CIFAR-10 images (one analysis with every baseline).

Each method's artifact reproduces its own probe's test accuracy on the stored features; its ONNX graph,
run in onnxruntime, matches the numpy head (max |Δlogit| ≤ 1e-4, argmax identical on ≥ 99.9 % of rows);
and `attach` gives the same predictions through the real timm model on features it extracts itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from redundancy import AnalysisConfig, Runtime
from redundancy.advice.recommend import intervals_from_summary, recommend
from redundancy.deploy import attach, load_artifact, save_artifact
from redundancy.deploy.methods import ARTIFACT_METHODS, build_method_artifact
from redundancy.deploy.onnx_export import OPSET, to_onnx
from redundancy.errors import RedundancyError
from redundancy.pipeline import Analysis, prepare_data, run_analysis
from redundancy.report import Report
from redundancy.sources.extraction import Features
from redundancy.sources.models import load_model
from redundancy.verdict import complete

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

CONFIG = {
    "model": {"name": "tf_efficientnet_lite0", "weights": "bundled"},
    "dataset": {"spec": "set by the fixture", "max_train": 600, "max_test": 200},
    "image_size": 64,
    "fractions": [0.01, 0.05, 0.2, 1.0],
    "seeds": 2,
    "deltas": [0.1],
    "baselines": ["pca", "first_k", "random_projection"],
    "bootstrap": 0,
    "feature_dtype": "float32",
}
DELTA = 0.1


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory, shared_data_dir: Path) -> tuple[Analysis, Features, Runtime]:
    root = tmp_path_factory.mktemp("methods")
    rt = Runtime(cache_dir=root / "cache", data_root=root)
    config = {**CONFIG, "dataset": {**CONFIG["dataset"], "spec": f"npz:{shared_data_dir / 'cifar10.npz'}"}}
    done = run_analysis(AnalysisConfig.model_validate(config), rt)
    features = Features.load(next(meta.parent for meta in (root / "cache").glob("*/meta.json")))
    return done, features, rt


def _artifact(done: Analysis, method: str, report: Report | None = None):  # type: ignore[no-untyped-def]
    report = report or done.report
    rec = complete(recommend(report.curve, report.dataset.classes, report.model.d, DELTA,
                              report.config.delta_mode, report.config.criterion,
                              intervals_from_summary(report.summary)), report.curve, list(report.dataset.classes))
    assert done.model_facts is not None and done.stats is not None
    sha, cfg = done.model_facts
    return build_method_artifact(report, done.stats, rec, method, weights_sha256=sha, data_config=cfg)


def _onnx_logits(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"features": np.ascontiguousarray(x, dtype=np.float32)})[0]


@pytest.mark.parametrize("method", ARTIFACT_METHODS)
def test_every_method_reproduces_its_probe_and_runs_in_onnxruntime(
    analysis: tuple[Analysis, Features, Runtime], method: str, tmp_path: Path
) -> None:
    done, features, _ = analysis
    art = _artifact(done, method)
    sub = art.metadata["subset"]
    assert sub["method"] == method and art.k == sub["k"]
    # the numpy head reproduces the probe's own test accuracy on the stored features (one image of slack:
    # the engine scored in torch, here numpy)
    acc = float((art.predict(features.x_test) == features.y_test).mean())
    assert abs(acc - sub["test_accuracy"]) <= 1 / len(features.y_test) + 1e-12, (method, acc, sub)
    # saved and loaded: the same head
    loaded = load_artifact(save_artifact(art, tmp_path / f"{method}.safetensors"))
    assert np.allclose(loaded.logits(features.x_test), art.logits(features.x_test), rtol=0, atol=1e-12)
    # ONNX: Gather (+ Sub + MatMul) + MatMul + Add, checked, opset stated
    blob = to_onnx(loaded)
    model = onnx.load_from_string(blob)
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert ops[0] == "Gather" and ops[-2:] == ["MatMul", "Add"]
    assert ("MatMul" in ops[1:-2]) == (method in ("pca", "random_projection"))
    assert model.opset_import[0].version == OPSET
    want = art.logits(features.x_test)
    got = _onnx_logits(blob, features.x_test)
    assert np.abs(got - want).max() <= 1e-4, (method, np.abs(got - want).max())
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.999


def test_attach_every_method_and_onnx_on_features_the_check_extracts(
    analysis: tuple[Analysis, Features, Runtime]
) -> None:
    done, _, rt = analysis
    report = done.report
    test = prepare_data(report.config, rt).test
    backbone = load_model("tf_efficientnet_lite0", "bundled").module
    for method in ARTIFACT_METHODS:
        art = _artifact(done, method)
        clf = attach(backbone, art, dtype=torch.float64)
        transform = art.transform()
        images = torch.stack([transform(test.load(i)) for i in range(60)])
        with torch.inference_mode():
            feats = clf.features(images)
            torch_logits = clf.head(feats).numpy()
            full = clf(images).numpy()
        assert np.allclose(full, torch_logits)
        onnx_logits = _onnx_logits(to_onnx(art), feats.numpy())
        assert np.abs(onnx_logits - torch_logits).max() <= 1e-4, method
        assert (onnx_logits.argmax(1) == art.logits(feats.numpy()).argmax(1)).mean() >= 0.999


def test_unknown_or_absent_method_is_refused(analysis: tuple[Analysis, Features, Runtime]) -> None:
    done, _, _ = analysis
    report = done.report
    with pytest.raises(RedundancyError) as exc:
        _artifact(done, "svd")
    assert exc.value.field == "method"
    no_pca = report.model_copy(update={"curve": [p for p in report.curve if p.kind != "pca"]})
    with pytest.raises(RedundancyError) as exc:
        _artifact(done, "pca", report=no_pca)
    assert exc.value.field == "method" and "did not run" in str(exc.value)
