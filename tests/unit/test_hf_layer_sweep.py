"""The layer sweep for Hugging Face encoders, its pure parts (issue 21): `layers` with an `hf:` model is
accepted, precomputed vectors and retrieval are still refused with the reason, and the default sweep's names."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from redundancy.config import AnalysisConfig
from redundancy.errors import UnknownLayerError
from redundancy.sources.encoders.hf import hf_default_sweep, parse_layer

HF = {"model": {"name": "hf:/models/minilm"}, "dataset": {"spec": "text:/data/reviews.csv"}}


def test_hf_models_take_layers_precomputed_vectors_and_retrieval_do_not() -> None:
    assert AnalysisConfig.model_validate({**HF, "layers": "sweep"}).layers == "sweep"
    assert AnalysisConfig.model_validate({**HF, "layers": ["hidden.3", "output"]}).layer_names() == [
        "hidden.3", "output"]
    with pytest.raises(ValidationError) as err:
        AnalysisConfig.model_validate({"dataset": {"spec": "embeddings:/data/x.npz"}, "layers": "sweep"})
    assert err.value.errors()[0]["loc"][0] == "layers"
    assert "'precomputed' vectors are one layer already, none to sweep" in str(err.value)
    with pytest.raises(ValidationError, match="needs task 'classification'"):
        AnalysisConfig.model_validate({**HF, "layers": "sweep", "task": "retrieval"})


def test_the_default_sweep_every_hidden_state_then_every_other_past_12() -> None:
    assert hf_default_sweep(6, True) == [*(f"hidden.{i}" for i in range(7)), "output"]
    assert hf_default_sweep(6, False) == [f"hidden.{i}" for i in range(7)]
    assert hf_default_sweep(24, False) == [f"hidden.{i}" for i in [*range(13), 14, 16, 18, 20, 22, 24]]
    assert hf_default_sweep(15, False)[-3:] == ["hidden.12", "hidden.14", "hidden.15"]  # the last always


def test_layer_names_parse_or_say_which_exist() -> None:
    assert parse_layer("hidden.0", 6) == 0 and parse_layer("hidden.6", 6) == 6 and parse_layer("output", 6) is None
    for bad in ("hidden.7", "layer3", "hidden.-1"):
        with pytest.raises(UnknownLayerError, match=rf"hidden.0 … hidden.6, not '{bad}'"):
            parse_layer(bad, 6)
