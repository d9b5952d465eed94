"""Compression artifacts on real data: the bundled ImageNet EfficientNet-Lite0 on real CIFAR-10 images.

One analysis (600 train / 200 test at 64 px) serves every test here: the artifact must reproduce its
seed's reported test accuracy exactly on the stored features, and within 0.5 points through the real
timm model on the real images; damaged or mismatched artifacts are refused, naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from redundancy import AnalysisConfig, Runtime
from redundancy.advice.recommend import RANDOM_KINDS, intervals_from_summary, recommend
from redundancy.cli.main import run_analyze
from redundancy.deploy import (
    Artifact,
    ArtifactError,
    IncompatibleTasksError,
    TaskCurve,
    attach,
    build_artifact,
    build_multitask_artifacts,
    choose_seed,
    export_artifacts,
    load_artifact,
    load_stats,
    recommend_multitask,
    report_model_facts,
    save_artifact,
    save_stats,
)
from redundancy.deploy.artifact import card_path
from redundancy.errors import RedundancyError
from redundancy.pipeline import prepare_data, run_analysis
from redundancy.probing import sample_subset
from redundancy.report import CurvePoint, Recommendation, Report
from redundancy.sources.extraction import Features
from redundancy.sources.models import load_model
from redundancy.sources.stats import GramStats

CONFIG = {
    "model": {"name": "tf_efficientnet_lite0", "weights": "bundled"},
    "dataset": {"spec": "set by the fixture", "max_train": 600, "max_test": 200},
    "image_size": 64,
    "fractions": [0.01, 0.05, 0.2, 1.0],
    "seeds": 3,
    "deltas": [0.02, 0.1],
    "baselines": [],
    "bootstrap": 0,
    "feature_dtype": "float32",  # stored test features = the rows the engine scored, exactly
}


@dataclass
class Analysis:
    report: Report
    stats: GramStats  # what run_analysis returned beside the report: the rows the probes were fitted on
    features: Features  # the stored features (from the feature cache the analysis wrote)
    runtime: Runtime
    sha: str
    data_config: dict

    def artifact(self, delta: float) -> Artifact:
        rec = recommendation_for(self.report, delta)
        return build_artifact(self.report, self.stats, rec, weights_sha256=self.sha, data_config=self.data_config)


def recommendation_for(report: Report, delta: float) -> Recommendation:
    """The engine's recommendation for any δ from the stored curve (what the service's recommend route does)."""
    return recommend(report.curve, report.dataset.classes, report.model.d, delta, report.config.delta_mode,
                     report.config.criterion, intervals_from_summary(report.summary))


def _analysis(root: Path, shared_data_dir: Path, **over: object) -> Analysis:
    rt = Runtime(cache_dir=root / "cache", data_root=root)
    config = {**CONFIG, "dataset": {**CONFIG["dataset"], "spec": f"npz:{shared_data_dir / 'cifar10.npz'}"}, **over}
    out = run_analysis(AnalysisConfig.model_validate(config), rt)
    features = Features.load(next(meta.parent for meta in (root / "cache").glob("*/meta.json")))
    assert out.model_facts is not None and out.stats is not None
    sha, data_config = out.model_facts
    assert (sha, data_config) == report_model_facts(out.report)  # what the engine recorded = a fresh reload
    return Analysis(out.report, out.stats, features, rt, sha, data_config)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cifar")


@pytest.fixture(scope="module")
def cifar(cifar_root: Path, shared_data_dir: Path) -> Analysis:
    """The default probe: ridge with λ by GCV, fitted on train + val."""
    return _analysis(cifar_root, shared_data_dir)


@pytest.fixture(scope="module")
def cifar_val(cifar_root: Path, shared_data_dir: Path, cifar: Analysis) -> Analysis:
    """λ chosen on the validation split, fitted on the fit split (the features come from the cache)."""
    return _analysis(cifar_root, shared_data_dir, lambda_select="val")


def _fit_rows(a: Analysis) -> tuple[np.ndarray, np.ndarray]:
    """The rows the probe was fitted on, from the stored features: train + val under GCV, train under val."""
    f = a.features
    if a.report.config.lambda_select == "val":
        return f.x_train, f.y_train
    return np.concatenate([f.x_train, f.x_val]), np.concatenate([f.y_train, f.y_val])


def _reference_predictions(a: Analysis, subset: np.ndarray, lam: float) -> np.ndarray:
    """The probe by the obvious computation on the fitted rows themselves (not the statistics):
    standardise, solve the ridge system on one-hot centred targets, add the prior."""
    x, y = _fit_rows(a)
    x = x.astype(np.float64)
    mu = x.mean(0)
    sd = x.std(0)
    sd = np.where(sd > 1e-12 * sd.max(), sd, 1.0)
    z = ((x - mu) / sd)[:, subset]
    onehot = np.eye(len(a.report.dataset.classes))[y]
    prior = onehot.mean(0)
    w = np.linalg.solve(z.T @ z + lam * np.eye(len(subset)), z.T @ (onehot - prior))
    zt = (a.features.x_test.astype(np.float64) - mu) / sd
    return (zt[:, subset] @ w + prior).argmax(1)


@pytest.mark.parametrize("which", ["cifar", "cifar_val"])
def test_artifact_reproduces_its_seed_on_the_stored_features(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    cifar: Analysis = request.getfixturevalue(which)
    x, y = cifar.features.x_test, cifar.features.y_test
    fit_x, _ = _fit_rows(cifar)
    assert cifar.stats.n == len(fit_x)
    ks = set()
    for delta in (0.02, 0.1, 0.3):
        art = load_artifact(save_artifact(cifar.artifact(delta), tmp_path / f"a{delta}.safetensors"))
        sub = art.metadata["subset"]
        ks.add(art.k)
        point = next(p for p in cifar.report.curve if p.k == art.k and p.seed == sub["seed"] and p.kind == "random")
        pred = art.predict(x)
        assert np.array_equal(pred, _reference_predictions(cifar, art.indices, point.lam))
        assert float((pred == y).mean()) == point.accuracy == sub["test_accuracy"]
        assert sub["fitted_on_rows"] == len(fit_x) and sub["selection"] == cifar.report.config.lambda_select
        assert np.array_equal(art.indices, sample_subset(art.d, art.k, point.seed, cifar.report.config.seed))
        seeds = [p.accuracy for p in cifar.report.curve if p.k == art.k and p.kind in RANDOM_KINDS]
        assert sub["seed_mean_test_accuracy"] == pytest.approx(np.mean(seeds))
        # the same head as an nn.Module, in float64, gives the same predictions
        from redundancy.deploy import SubsetHead

        head = SubsetHead(art, dtype=torch.float64)
        assert np.array_equal(head(torch.as_tensor(x, dtype=torch.float64)).argmax(1).numpy(), pred)
    assert len(ks) >= 2, "the δs should give different subset sizes, including one below the full layer"


def test_metadata_and_model_card(cifar: Analysis, tmp_path: Path) -> None:
    path = save_artifact(cifar.artifact(0.1), tmp_path / "head.safetensors")
    art = load_artifact(path)
    m, ds, rec = art.metadata["model"], art.metadata["dataset"], art.metadata["recommendation"]
    assert m["name"] == "tf_efficientnet_lite0" and m["weights_identity"].startswith("bundled:sha256=")
    assert m["layer"] == "pre_logits" and m["d"] == 1280 and m["data_config"]["input_size"] == [3, 64, 64]
    assert ds["classes"][:2] == ["airplane", "automobile"] and len(ds["classes"]) == 10
    assert rec["delta"] == 0.1 and rec["mode"] == "relative" and rec["criterion"] == "mean"
    assert rec["k"] == art.k and "gini_change" in rec["fairness"] and rec["savings"]["head_params_kept"] > 0
    assert art.metadata["engine_version"] == cifar.report.environment.code_version
    assert art.weight.shape == (art.k, 10) and art.indices.dtype == np.int64
    card = card_path(path)
    assert card.is_file() and '"sha256"' in card.read_text() and "interchangeable on average" in card.read_text()


def test_attached_to_the_real_timm_model_on_real_images(cifar: Analysis) -> None:
    art = cifar.artifact(0.1)
    assert art.k < art.d
    model = attach(load_model("tf_efficientnet_lite0", "bundled").module, art)
    test = prepare_data(cifar.report.config, cifar.runtime).test
    transform = art.transform()
    images = torch.stack([transform(test.load(i)) for i in range(len(test))])
    with torch.inference_mode():
        pred = torch.cat([model(images[i:i + 50]) for i in range(0, len(images), 50)]).argmax(1).numpy()
    acc = float((pred == test.labels).mean())
    assert abs(acc - art.metadata["subset"]["test_accuracy"]) <= 0.005


@pytest.mark.parametrize("which", ["cifar", "cifar_val"])
def test_seed_choice_uses_the_probes_own_selection_score(which: str, request: pytest.FixtureRequest) -> None:
    cifar: Analysis = request.getfixturevalue(which)
    art = cifar.artifact(0.1)
    k = art.k
    points = [p for p in cifar.report.curve if p.k == k and p.kind == "random"]
    assert all(p.selection == cifar.report.config.lambda_select and p.selection_score is not None for p in points)
    seed = choose_seed(points)
    assert art.metadata["subset"]["seed"] == seed
    scores = {p.seed: p.selection_score for p in points}
    best = min(scores.values()) if which == "cifar" else max(scores.values())  # GCV: lowest; val: highest
    assert seed == min(s for s, v in scores.items() if v == best)
    shuffled = [p.model_copy(update={"accuracy": a}) for p, a in zip(points, np.random.permutation(
        [p.accuracy for p in points]), strict=True)]
    assert choose_seed(shuffled) == seed


def _field(exc: pytest.ExceptionInfo[ArtifactError]) -> str | None:
    return exc.value.field


def test_damaged_or_mismatched_artifacts_are_refused(cifar: Analysis, tmp_path: Path) -> None:
    path = save_artifact(cifar.artifact(0.1), tmp_path / "head.safetensors")
    raw = path.read_bytes()

    flipped = tmp_path / "flipped.safetensors"
    flipped.write_bytes(raw[:-9] + bytes([raw[-9] ^ 0xFF]) + raw[-8:])  # one byte of the bias
    with pytest.raises(ArtifactError, match="corrupted") as exc:
        load_artifact(flipped)
    assert _field(exc) == "checksum"

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ArtifactError, match="not a readable safetensors file") as exc:
        load_artifact(truncated)
    assert _field(exc) == "file"

    with pytest.raises(ArtifactError, match="not found") as exc:
        load_artifact(tmp_path / "absent.safetensors")
    assert _field(exc) == "path"

    with pytest.raises(ArtifactError, match="1280-neuron layer, not 2048") as exc:
        load_artifact(path, d=2048)
    assert _field(exc) == "d"
    with pytest.raises(ArtifactError, match="fitted on weights") as exc:
        load_artifact(path, weights_sha256="0" * 64)
    assert _field(exc) == "model.weights_sha256"

    art = load_artifact(path)
    with pytest.raises(ArtifactError, match="weights differ") as exc:
        attach(load_model("tf_efficientnet_lite0", "random").module, art)
    assert _field(exc) == "model.weights_sha256"
    with pytest.raises(ArtifactError, match="is 'resnet18'") as exc:
        attach(load_model("resnet18", "random").module, art)
    assert _field(exc) == "model.name"
    model = attach(load_model("tf_efficientnet_lite0", "bundled").module, art)
    with pytest.raises(ArtifactError, match="fitted on d = 1280") as exc:
        model.head(torch.zeros(2, 512))
    assert _field(exc) == "d"
    with pytest.raises(ArtifactError, match=r"features have shape \(2, 512\)") as exc:
        art.predict(np.zeros((2, 512)))
    assert _field(exc) == "d"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda a: {"indices": a.indices[::-1].copy()}, "indices", "strictly increasing"),
        (lambda a: {"indices": a.indices + a.d}, "indices", r"lie in \[0, 1280\)"),
        (lambda a: {"weight": a.weight[:, :5].copy()}, "weight", "expected"),
        (lambda a: {"bias": a.bias[:3].copy()}, "bias", "expected"),
        (lambda a: {"metadata": {**a.metadata, "format": "other/9"}}, "format", "not 'redundancy-subset-head/1'"),
        (lambda a: {"metadata": {k: v for k, v in a.metadata.items() if k != "subset"}}, "metadata", "'subset'"),
    ],
)
def test_inconsistent_artifacts_are_refused(cifar: Analysis, tmp_path: Path, change, field: str, message: str) -> None:
    from dataclasses import replace

    path = save_artifact(replace(cifar.artifact(0.1), **change(cifar.artifact(0.1))), tmp_path / "x.safetensors")
    with pytest.raises(ArtifactError, match=message) as exc:
        load_artifact(path)
    assert _field(exc) == field


def test_statistics_file_round_trip_gives_the_same_head(cifar: Analysis, tmp_path: Path) -> None:
    path = save_stats(cifar.stats, tmp_path / "stats.npz")
    again = load_stats(path)
    rec = recommendation_for(cifar.report, 0.1)
    a = cifar.artifact(0.1)
    b = build_artifact(cifar.report, again, rec, weights_sha256=cifar.sha, data_config=cifar.data_config)
    assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)

    (tmp_path / "bad.npz").write_bytes(path.read_bytes()[:100])
    with pytest.raises(RedundancyError, match="cannot read statistics") as exc:
        load_stats(tmp_path / "bad.npz")
    assert _field(exc) == "stats"
    other = load_stats(path)
    other.n += 1
    with pytest.raises(ArtifactError, match="are not this report's") as exc:
        build_artifact(cifar.report, other, rec, weights_sha256=cifar.sha, data_config=cifar.data_config)
    assert _field(exc) == "stats"


def test_export_writes_one_artifact_per_delta(cifar: Analysis, tmp_path: Path) -> None:
    paths = export_artifacts(cifar.report, tmp_path / "out", cifar.stats, (cifar.sha, cifar.data_config))
    assert len(paths) == len(cifar.report.recommendations) == 2
    for path, rec in zip(paths, cifar.report.recommendations, strict=True):
        art = load_artifact(path, d=1280, weights_sha256=cifar.sha)
        assert art.k == rec.k and card_path(path).is_file() and f"delta{rec.delta:g}" in path.name


def test_cli_export_refuses_a_logistic_report_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The CLI flag end to end on a tiny run: a logistic probe has no head from the statistics."""
    import argparse

    from redundancy.cli.main import add_analyze_arguments

    p = argparse.ArgumentParser()
    add_analyze_arguments(p)
    common = ["--model", "resnet18", "--weights", "random", "--dataset", "digits", "--max-train", "100",
              "--max-test", "50", "--image-size", "32", "--fractions", "0.1,1", "--seeds", "2",
              "--baselines", "none", "--bootstrap", "0", "--no-cache", "--data-root", str(tmp_path), "--quiet",
              "--delta", "0.1"]
    args = p.parse_args([*common, "--probe", "logistic", "--logistic-epochs", "1", "--export", str(tmp_path / "x")])
    assert run_analyze(args) == 1
    assert "advisor: error [probe]: a head is fitted from the sufficient statistics" in capsys.readouterr().err
    args = p.parse_args([*common, "--export", str(tmp_path / "ok")])
    assert run_analyze(args) == 0
    out = capsys.readouterr().out
    assert "artifact written to" in out and "saves" in out
    (written,) = sorted((tmp_path / "ok").glob("*.safetensors"))
    assert load_artifact(written).metadata["model"]["name"] == "resnet18"


# -- several tasks at once --------------------------------------------------------------------------


def _task(rng: np.random.Generator, ks: list[int], d: int, seeds: int, name: str = "m") -> TaskCurve:
    curve = []
    for k in ks:
        level = 0.3 + 0.6 * np.log1p(k) / np.log1p(d)
        for seed in range(1 if k == d else seeds):
            acc = float(np.clip(level + rng.normal(0, 0.04), 0, 1))
            curve.append(CurvePoint(fraction=k / d, k=k, seed=seed, accuracy=acc,
                                    per_class_accuracy=list(rng.uniform(0, 1, 4)), cka=float(rng.uniform())))
    return TaskCurve(curve=curve, classes=list("abcd"), d=d, model=name, weights_identity="w", layer="pre_logits",
                     master_seed=0)


def _brute_force(tasks: dict[str, TaskCurve], delta: float, mode: str, criterion: str) -> tuple[int, str]:
    """The obvious loop: every k every dataset tested, ascending; the first that passes everywhere."""
    def stat(t: TaskCurve, k: int) -> float:
        accs = [p.accuracy for p in t.curve if p.k == k]
        return float(np.mean(accs)) if criterion == "mean" else min(accs)

    def margin(t: TaskCurve, k: int) -> float:
        full = stat(t, t.d)
        bar = (1 - delta) * full if mode == "relative" else full - delta
        return stat(t, k) - bar

    ks = sorted(set.intersection(*({p.k for p in t.curve} for t in tasks.values())))
    for i, k in enumerate(ks):
        if all(margin(t, k) >= -1e-12 for t in tasks.values()) or k == ks[-1]:
            at = ks[i - 1] if i > 0 else k
            return k, min(tasks, key=lambda n: margin(tasks[n], at))
    raise AssertionError("unreachable")


def test_multitask_answer_matches_a_brute_force_loop() -> None:
    rng = np.random.default_rng(0)
    d, grid = 256, [1, 3, 8, 26, 51, 128, 205, 256]
    for trial in range(150):
        tasks = {f"ds{i}": _task(rng, [k for k in grid if k == d or rng.uniform() > 0.15], d, 3)
                 for i in range(int(rng.integers(2, 4)))}
        delta = float(rng.choice([0.0, 0.02, 0.05, 0.1, 0.3]))
        mode = "relative" if trial % 2 else "absolute"
        criterion = "mean" if trial % 3 else "worst_seed"
        got = recommend_multitask(tasks, delta, mode, criterion)  # type: ignore[arg-type]
        assert (got.k, got.binding) == _brute_force(tasks, delta, mode, criterion)
        for row in got.tasks:
            assert row.margin == pytest.approx(row.accuracy - row.threshold)
            assert row.own_k <= got.k and row.savings.head_params_kept == got.k * 4 + 4


def test_incompatible_tasks_are_refused_naming_them() -> None:
    rng = np.random.default_rng(1)
    a, b = _task(rng, [8, 64], 64, 2), _task(rng, [8, 64], 64, 2, name="resnet50")
    with pytest.raises(IncompatibleTasksError, match="B used model.name 'resnet50'") as exc:
        recommend_multitask({"A": a, "B": b}, 0.05)
    assert exc.value.field == "model.name"
    c = TaskCurve(**{**a.__dict__, "layer": "blocks.5"})
    with pytest.raises(IncompatibleTasksError, match="C used layer 'blocks.5'"):
        recommend_multitask({"A": a, "C": c}, 0.05)
    with pytest.raises(IncompatibleTasksError, match="no datasets"):
        recommend_multitask({}, 0.05)


def _pt(seed: int, cka: float | None = 0.5, selection: str | None = None, score: float | None = None,
        accuracy: float = 0.5) -> CurvePoint:
    return CurvePoint(fraction=0.1, k=10, seed=seed, accuracy=accuracy, per_class_accuracy=[accuracy], cka=cka,
                      selection=selection, selection_score=score)


def _slow_choice(tasks: list[list[CurvePoint]]) -> int:
    """The rule by the obvious loop: per dataset, sort the seeds best first and take each one's position
    among strictly better ones; the lowest mean position wins, ties to the lowest seed."""
    positions: dict[int, list[int]] = {}
    for t in tasks:
        lower_better = [(p.selection_score if p.selection == "gcv" else -p.selection_score, p.seed) for p in t]
        for score, seed in lower_better:
            positions.setdefault(seed, []).append(len([1 for s, _ in lower_better if s < score]))
    best = min(sum(v) / len(v) for v in positions.values())
    return min(seed for seed, v in positions.items() if sum(v) / len(v) == best)


def test_seed_choice_by_selection_score_gcv_lowest_val_highest() -> None:
    gcv = [_pt(0, 0.9, "gcv", 2.0, accuracy=0.9), _pt(1, 0.1, "gcv", 1.5, accuracy=0.1), _pt(2, 0.5, "gcv", 3.0)]
    assert choose_seed(gcv) == 1  # the lowest GCV, whatever CKA or test accuracy say
    val = [_pt(0, 0.9, "val", 0.70), _pt(1, 0.1, "val", 0.80), _pt(2, 0.5, "val", 0.80)]
    assert choose_seed(val) == 1  # the highest validation accuracy; ties to the lowest seed
    assert choose_seed([_pt(0, 0.1, "gcv", float("nan")), _pt(1, 0.1, "gcv", 9.0)]) == 1  # NaN is the worst
    # several datasets on other scales: by mean rank, so neither dataset's scale dominates
    a = [_pt(0, score=1000.0, selection="gcv"), _pt(1, score=1001.0, selection="gcv"), _pt(2, score=5000.0,
                                                                                           selection="gcv")]
    b = [_pt(0, score=0.50, selection="val"), _pt(1, score=0.90, selection="val"), _pt(2, score=0.95,
                                                                                      selection="val")]
    assert choose_seed(a, b) == _slow_choice([a, b]) == 0  # ranks: seed 0 (0, 2), seed 1 (1, 1), seed 2 (2, 0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        tasks = [[_pt(s, selection=sel, score=float(rng.integers(0, 4))) for s in range(int(rng.integers(1, 5)))]
                 for sel in rng.choice(["gcv", "val"], size=int(rng.integers(1, 4)))]
        n = min(len(t) for t in tasks)
        tasks = [t[:n] for t in tasks]
        assert choose_seed(*tasks) == _slow_choice(tasks)


def test_seed_choice_falls_back_to_mean_train_cka_without_scores() -> None:
    # seed 0 wins on one dataset, seed 1 on average over both
    assert choose_seed([_pt(0, 0.9), _pt(1, 0.8)], [_pt(0, 0.1), _pt(1, 0.5)]) == 1
    assert choose_seed([_pt(2, 0.5), _pt(1, 0.5)]) == 1  # ties to the lowest seed
    assert choose_seed([_pt(0, None), _pt(1, 0.2)]) == 1  # an undefined CKA loses
    # one point without a score: the whole choice falls back to CKA
    assert choose_seed([_pt(0, 0.9, "gcv", 5.0), _pt(1, 0.1, "gcv", None)]) == 0
    with pytest.raises(ArtifactError):
        choose_seed([])


def test_two_real_datasets_share_one_subset(cifar: Analysis, tmp_path: Path) -> None:
    digits_cfg = {**CONFIG, "dataset": {"spec": "digits", "max_train": 300, "max_test": 100}}
    digits = run_analysis(AnalysisConfig.model_validate(digits_cfg), Runtime(cache_dir=None, data_root=tmp_path))
    reports = {"cifar10": cifar.report, "digits": digits.report}
    tasks = {name: TaskCurve.from_report(r) for name, r in reports.items()}
    answer = recommend_multitask(tasks, 0.1)
    assert answer.k == _brute_force(tasks, 0.1, "relative", "mean")[0]
    assert answer.k >= max(r.recommendations[-1].k for r in reports.values())  # both δ = 0.1 answers fit
    assert answer.binding in reports
    arts = build_multitask_artifacts(reports, {"cifar10": cifar.stats, "digits": digits.stats}, answer,
                                     weights_sha256=cifar.sha, data_config=cifar.data_config)
    assert np.array_equal(arts["cifar10"].indices, arts["digits"].indices)
    assert arts["digits"].classes[:3] == ["0", "1", "2"] and arts["cifar10"].classes[0] == "airplane"
    pred = arts["cifar10"].predict(cifar.features.x_test)
    seed = arts["cifar10"].metadata["subset"]["seed"]
    point = next(p for p in cifar.report.curve if p.k == answer.k and p.seed == seed and p.kind == "random")
    assert float((pred == cifar.features.y_test).mean()) == point.accuracy
