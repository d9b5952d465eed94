"""`embeddings:<path>`: precomputed vectors as a dataset, no model (issue 19)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from redundancy import AnalysisConfig, Runtime, analyze
from redundancy.errors import DatasetFormatError, DatasetNotFoundError
from redundancy.pipeline import make_transform
from redundancy.sources.datasets import load_dataset
from redundancy.sources.datasets.embeddings import MAX_EMBEDDING_WIDTH, Columns, check_embeddings, load_embeddings
from redundancy.sources.extraction import DeviceForward, image_batches
from redundancy.sources.models import FeatureExtractor, load_model

IMAGE_SIZE = 32
LAYER = "blocks.4"  # 112 channels, pooled: small enough to probe quickly on 2 loaded cores
GRID = {"fractions": [0.02, 0.1, 0.3, 1.0], "seeds": 2, "deltas": [0.01, 0.05], "bootstrap": 50,
        "dataset": {"max_train": 400, "max_test": 200}}


def _config(model: dict | None, spec: str, **extra: object) -> AnalysisConfig:
    body: dict = {"dataset": {**GRID["dataset"], "spec": spec}, **{k: v for k, v in GRID.items() if k != "dataset"}}
    if model is not None:
        body["model"] = model
    return AnalysisConfig.model_validate({**body, **extra})


@pytest.fixture(scope="module")
def digits_features() -> dict[str, np.ndarray]:
    """What the bundled image model produces for every digits image (train and test, in order)."""
    ds = load_dataset("digits")
    loaded = load_model("tf_efficientnet_lite0", "bundled")
    transform, _ = make_transform(loaded, IMAGE_SIZE)
    forward = DeviceForward(FeatureExtractor(loaded.module, LAYER), "cpu")
    out = {"classes": np.asarray(ds.classes)}
    for name, split in (("train", ds.train), ("test", ds.test)):
        out[f"x_{name}"] = torch.cat(
            [forward(b) for b in image_batches(split, transform, torch.device("cpu"), 64, 0)]).numpy()
        out[f"y_{name}"] = split.labels
    return out


def _answer(report) -> tuple:  # noqa: ANN001
    curve = sorted((p.kind, p.k, p.seed, p.accuracy) for p in report.curve)
    recs = [(r.delta, r.k, r.fraction) for r in report.recommendations]
    return report.full_accuracy, curve, recs


def test_embeddings_give_the_image_jobs_answer(digits_features: dict, tmp_path: Path) -> None:
    """The image model's features saved as .npz, .parquet and .safetensors → the image job's answer:
    the same subsets, the same accuracies, the same recommendations."""
    runtime = Runtime(cache_dir=None, work_dir=tmp_path / "work")
    image = analyze(_config({"name": "tf_efficientnet_lite0", "weights": "bundled"}, "digits",
                            image_size=IMAGE_SIZE, layer=LAYER), runtime)
    npz = tmp_path / "digits.npz"
    np.savez(npz, **digits_features)
    pq_path = tmp_path / "digits.parquet"
    _write_parquet(pq_path, digits_features, label_names=True)
    st_path = tmp_path / "digits.safetensors"
    _write_safetensors(st_path, digits_features)
    for path in (npz, pq_path, st_path):
        report = analyze(_config(None, f"embeddings:{path}"), runtime)
        assert report.model.name == "precomputed"
        assert report.model.weights_identity.startswith("sha256:") and len(report.model.weights_identity) == 71
        assert report.model.d == image.model.d == 112
        assert report.dataset.classes == image.dataset.classes
        assert report.dataset.sizes == image.dataset.sizes
        assert _answer(report) == _answer(image), path.suffix


def _write_parquet(path: Path, f: dict, label_names: bool, fixed: bool = True) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = np.concatenate([f["x_train"], f["x_test"]]).astype(np.float32)
    y = np.concatenate([f["y_train"], f["y_test"]])
    d = x.shape[1]
    emb = (pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), d) if fixed
           else pa.array([row.tolist() for row in x], type=pa.list_(pa.float32())))
    labels = pa.array([str(f["classes"][i]) for i in y]) if label_names else pa.array(y)
    split = pa.array(["train"] * len(f["x_train"]) + ["test"] * len(f["x_test"]))
    pq.write_table(pa.table({"vec": emb, "cls": labels, "part": split}) if not fixed
                   else pa.table({"embedding": emb, "label": labels, "split": split}), path)


def _write_safetensors(path: Path, f: dict) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(f[k]) for k in ("x_train", "y_train", "x_test", "y_test")}, str(path),
              metadata={"classes": json.dumps([str(c) for c in f["classes"]])})


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    base = {"x_train": rng.normal(size=(20, 4)).astype(np.float32), "y_train": np.arange(20) % 2,
            "x_test": rng.normal(size=(10, 4)).astype(np.float32), "y_test": np.arange(10) % 2}
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y_test": None}, "lacks array(s) y_test"),
        ({"y_train": np.array([{"a": 1}] * 20, dtype=object)}, "y_train is an object array"),
        ({"x_train": np.zeros((20, 0), np.float32), "x_test": np.zeros((10, 0), np.float32)}, "width 0"),
        ({"x_train": np.zeros((2, MAX_EMBEDDING_WIDTH + 1), np.float32), "y_train": np.array([0, 1]),
          "x_test": np.zeros((2, MAX_EMBEDDING_WIDTH + 1), np.float32), "y_test": np.array([0, 1])},
         f"above the cap of {MAX_EMBEDDING_WIDTH:,}"),
        ({"x_test": np.zeros((10, 5), np.float32)}, "x_train has width 4 but x_test has width 5"),
        ({"x_train": np.zeros((20, 4), np.int32)}, "x_train must be float16, float32 or float64, got int32"),
        ({"y_train": np.linspace(0, 1, 20)}, "y_train must be integers or strings, got float64"),
    ],
)
def test_bad_npz_headers_are_refused_cheaply(tmp_path: Path, arrays: dict, message: str) -> None:
    """What the header shows is refused by `check_embeddings`, which the server calls at submission."""
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_embeddings(path)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": np.where(np.arange(80).reshape(20, 4) % 13 == 0, np.nan, 1.0).astype(np.float32)},
         r"7 train vector\(s\) hold NaN or inf \(rows 0, 3, 6, 9, 13 …\)"),
        ({"x_test": np.full((10, 4), np.inf, np.float64)}, r"10 test vector\(s\) hold NaN or inf"),
        ({"y_test": np.zeros(10, np.int64)}, r"the test split has a single class \(0\)"),
        ({"y_train": np.full(20, -1)}, "class indices ≥ 0, found -1"),
        ({"y_train": np.array(["a", "b"] * 10)}, "integers in one split and strings in another"),
    ],
)
def test_bad_npz_values_fail_the_load(tmp_path: Path, arrays: dict, message: str) -> None:
    path = _npz(tmp_path / "bad.npz", **arrays)
    check_embeddings(path)  # the header is fine
    with pytest.raises(DatasetFormatError, match=message):
        load_embeddings("embeddings:x", path)


def test_string_labels_and_missing_file(tmp_path: Path) -> None:
    path = _npz(tmp_path / "ok.npz", y_train=np.array(["cat", "dog"] * 10), y_test=np.array(["dog", "cat"] * 5))
    ds = load_embeddings("embeddings:x", path)
    assert ds.classes == ["cat", "dog"] and ds.train.labels[:2].tolist() == [0, 1] and ds.test.items.dtype == np.float32
    with pytest.raises(DatasetNotFoundError, match="not found"):
        check_embeddings(tmp_path / "absent.npz")


def test_file_type_by_magic_bytes_without_extension(tmp_path: Path, digits_features: dict) -> None:
    small = {k: (v[:40] if k != "classes" else v) for k, v in digits_features.items()}
    sources = {"npz": _npz(tmp_path / "a.npz", **{k: small[k] for k in ("x_train", "y_train", "x_test", "y_test")})}
    _write_parquet(tmp_path / "a.parquet", small, label_names=False)
    _write_safetensors(tmp_path / "a.safetensors", small)
    sources["parquet"], sources["safetensors"] = tmp_path / "a.parquet", tmp_path / "a.safetensors"
    for fmt, path in sources.items():
        bare = tmp_path / f"upload-{fmt}"
        bare.write_bytes(path.read_bytes())
        assert check_embeddings(bare).format == fmt
        assert np.array_equal(load_embeddings("x", bare).train.items, load_embeddings("x", path).train.items)
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello world")
    with pytest.raises(DatasetFormatError, match="not a .npz, .parquet or .safetensors"):
        check_embeddings(junk)


def test_parquet_columns_ragged_and_missing(tmp_path: Path, digits_features: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    small = {k: (v[:30] if k != "classes" else v) for k, v in digits_features.items()}
    path = tmp_path / "named.parquet"
    _write_parquet(path, small, label_names=True, fixed=False)  # list<float> column named vec/cls/part
    with pytest.raises(DatasetFormatError, match="lacks column\\(s\\) 'embedding', 'label', 'split'"):
        check_embeddings(path)
    ds = load_embeddings("x", path, Columns("vec", "cls", "part"))
    assert np.allclose(ds.train.items, small["x_train"]) and len(ds.test) == 30
    ragged = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"embedding": [[1.0, 2.0], [1.0], [3.0, 4.0], [0.0, 1.0]], "label": [0, 1, 0, 1],
                             "split": ["train", "train", "test", "test"]}), ragged)
    with pytest.raises(DatasetFormatError, match="ragged vectors .* 1 row\\(s\\) differ \\(row 1 has 1\\)"):
        load_embeddings("x", ragged)
    floats = tmp_path / "floats.parquet"
    pq.write_table(pa.table({"embedding": [[1.0]] * 4, "label": [0.5] * 4, "split": ["train"] * 4}), floats)
    with pytest.raises(DatasetFormatError, match="label column 'label' must be integers or strings, got double"):
        check_embeddings(floats)
    odd = tmp_path / "odd.parquet"
    pq.write_table(pa.table({"embedding": [[1.0]] * 4, "label": [0, 1, 0, 1], "split": ["train", "val", "test", "x"]}),
                   odd)
    with pytest.raises(DatasetFormatError, match="holds 'val', 'x'; expected train or test"):
        load_embeddings("x", odd)


def test_config_defaults_and_refusals() -> None:
    cfg = _config(None, "embeddings:/data/x.parquet")
    assert cfg.model.name == "precomputed" and cfg.dataset.embedding_column == "embedding"
    for model, spec, message in [
        ({"name": "resnet18"}, "embeddings:/x.npz", "must be 'precomputed'"),
        ({"name": "precomputed"}, "digits", "needs an embeddings: dataset"),
        ({"name": "resnet18"}, "text:/x.csv", "needs an hf: model"),
        ({"name": "resnet18", "pooling": "cls"}, "digits", "hf: models only"),
    ]:
        with pytest.raises(ValueError, match=message):
            _config(model, spec)
    with pytest.raises(ValueError, match="Field required"):
        _config(None, "digits")
    with pytest.raises(ValueError, match="no layers"):
        _config(None, "embeddings:/x.npz", layer="blocks.1")


def test_submission_check_refuses_a_bad_header(tmp_path: Path) -> None:
    """The API's cheap check: a file on the server's disk with a missing array is a 422 at submission."""
    from service.api.validation import config_problems
    from service.core.config import Settings

    settings = Settings(data_dir=str(tmp_path), data_roots=str(tmp_path))
    path = _npz(tmp_path / "bad.npz", y_test=None)
    problems = config_problems(_config(None, f"embeddings:{path}").model_dump(mode="json"), settings)
    assert [p.field for p in problems] == ["dataset.spec"] and "lacks array(s) y_test" in problems[0].reason
    good = _config(None, f"embeddings:{_npz(tmp_path / 'ok.npz')}")
    assert config_problems(good.model_dump(mode="json"), settings) == []  # a good one passes


def test_sharded_vectors_give_the_unsharded_answer(tmp_path: Path) -> None:
    """The worker's sharded path (`extract_shard` per row range, then `analyze_from_shards`) takes the
    precomputed source like a model."""
    from redundancy.pipeline import analyze_from_shards, extract_shard, prepare
    from redundancy.sources.extraction import shard_rows

    rng = np.random.default_rng(1)
    y_train, y_test = np.arange(60) % 3, np.arange(30) % 3
    x_train = (rng.normal(size=(60, 8)) + y_train[:, None]).astype(np.float32)
    x_test = (rng.normal(size=(30, 8)) + y_test[:, None]).astype(np.float32)
    path = _npz(tmp_path / "v.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    cfg = _config(None, f"embeddings:{path}", fractions=[0.25, 0.5, 1.0], feature_dtype="float32")
    runtime = Runtime(cache_dir=None, work_dir=tmp_path / "work")
    whole = analyze(cfg, runtime)
    prep = prepare(cfg, runtime)
    stores = []
    for i, rows in enumerate(shard_rows(sum(map(len, prep.splits)), 37)):
        stores.append(tmp_path / f"shard{i}")
        extract_shard(cfg, prep, rows, stores[-1], "cpu", runtime)
    sharded = analyze_from_shards(cfg, runtime, stores).report
    assert len(stores) == 3 and _answer(sharded) == _answer(whole)
    assert whole.model.layer == "precomputed" and "width 8" in whole.model.layer_pooling
