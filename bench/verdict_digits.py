"""Issue 22's done-when check on a finished digits job, through the engine (the service answers from the same
functions): methods and verdict at δ 0.05, a 64-dim budget, a 0.02 worst-class limit, int8 re-scores, and
every method's ONNX graph in onnxruntime on features the attached model extracts itself.

    PYTHONPATH=$PWD:$PWD/client HF_HUB_OFFLINE=1 python bench/verdict_digits.py

Measured 2026-12-04 (Intel Xeon, 2 cores, load average ~15; analysis 1,223 s): d 1280, full 0.9556;
random_subset k 384 (0.9078), first_k 256 (0.9194), pca 64 (0.9083), random_projection 128 (0.9361);
verdict pca k = 64, not nested; budget 64: pca 0.9083, random_projection 0.8828, first_k 0.7722,
random_subset 0.7094; worst-class limit 0.02: none below the full layer (random subsets at 384 lose
14.9 points on their worst class); ONNX vs numpy head max |Δlogit| ≤ 7.1e-7, argmax identical on 100 %,
each artifact's accuracy = its probe's. int8 (re-run on the cached features, 94 s): random subsets at
k 384, 5 seeds, 0.9078 float → 0.9250 int8 (+1.7 points, about 6 of 360 test images); first-k at 256
0.9194 → 0.9222 (the float reference is the same fixed-λ solve and equals the curve here).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from redundancy import AnalysisConfig, Runtime
from redundancy.advice.recommend import intervals_from_summary, recommend
from redundancy.deploy import attach
from redundancy.deploy.methods import ARTIFACT_METHODS, build_method_artifact
from redundancy.deploy.onnx_export import to_onnx
from redundancy.pipeline import prepare_data, run_analysis
from redundancy.sources.models import load_model
from redundancy.verdict import Budget, FairnessLimits, complete


def main() -> None:
    root = Path(tempfile.mkdtemp())
    rt = Runtime(cache_dir=root / "cache", data_root=root)
    cfg = AnalysisConfig.model_validate({"model": {"name": "tf_efficientnet_lite0", "weights": "bundled"},
                                         "dataset": {"spec": "digits"}, "deltas": [0.05],
                                         "baselines": ["pca", "first_k", "random_projection"]})
    t = time.time()
    done = run_analysis(cfg, rt)
    r = done.report
    print("analyze s", round(time.time() - t), "| d", r.model.d, "full", round(r.full_accuracy, 4))
    rec = r.recommendations[0]
    assert rec.verdict is not None and rec.storage is not None
    for m in rec.methods:
        print(" ", m.method, m.k, round(m.score, 4), m.met_below_full, round(m.fairness.worst_class_change, 4))
    print("verdict", rec.verdict.method, rec.verdict.k, "|", rec.verdict.reason, "| nested", rec.verdict.nested)
    print("storage verdict", rec.storage.verdict.bytes_per_vector, rec.storage.full.fits)
    classes = list(r.dataset.classes)
    budget = complete(rec, r.curve, classes, budget=Budget(max_dims=64)).budget
    assert budget is not None and all(m.k is None or m.k <= 64 for m in budget.methods)
    for m in budget.methods:
        print("  budget64", m.method, m.k, m.score and round(m.score, 4))
    c = complete(rec, r.curve, classes, limits=FairnessLimits(max_worst_class_drop=0.02)).constrained
    assert c is not None
    print("limit 0.02:", c.met, c.k, c.fairness.worst_class_change if c.fairness else None, c.note)
    print("quantised", [(q.method, q.k, round(q.accuracy_float, 4), round(q.accuracy_quantised, 4))
                        for q in r.quantised])
    assert done.model_facts is not None and done.stats is not None
    sha, dc = done.model_facts
    test = prepare_data(r.config, rt).test
    backbone = load_model("tf_efficientnet_lite0", "bundled").module
    full = complete(recommend(r.curve, r.dataset.classes, r.model.d, 0.05, r.config.delta_mode, r.config.criterion,
                                  intervals_from_summary(r.summary)), r.curve, classes)
    for method in ARTIFACT_METHODS:
        art = build_method_artifact(r, done.stats, full, method, weights_sha256=sha, data_config=dc)
        clf = attach(backbone, art)
        tf = art.transform()
        images = torch.stack([tf(test.load(i)) for i in range(len(test))])
        with torch.inference_mode():
            feats = torch.cat([clf.features(images[i:i + 100]) for i in range(0, len(images), 100)]).numpy()
        session = ort.InferenceSession(to_onnx(art), providers=["CPUExecutionProvider"])
        got = session.run(["logits"], {"features": feats.astype(np.float32)})[0]
        want = art.logits(feats)
        agree = (got.argmax(1) == want.argmax(1)).mean()
        acc = (want.argmax(1) == test.labels).mean()
        print(f"  onnx {method} k={art.k} max|d|={np.abs(got - want).max():.2e} argmax agree={agree:.4f} "
              f"acc={acc:.4f} (probe {art.metadata['subset']['test_accuracy']:.4f})")


if __name__ == "__main__":
    main()
