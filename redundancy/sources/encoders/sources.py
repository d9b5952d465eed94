"""Which configs take a feature source instead of a timm model, and the source for one."""

from __future__ import annotations

from pathlib import Path

from redundancy.config import PRECOMPUTED, AnalysisConfig
from redundancy.errors import InvalidConfigError
from redundancy.runtime import Runtime
from redundancy.sources.datasets.embeddings import Columns
from redundancy.sources.datasets.registry import parse_spec
from redundancy.sources.encoders.base import FeatureSource
from redundancy.sources.encoders.hf import HF_PREFIX, HfEncoder, transformers_available
from redundancy.sources.encoders.precomputed import Precomputed


def uses_feature_source(config: AnalysisConfig) -> bool:
    """True for the `precomputed` model (embeddings: datasets) and `hf:` models."""
    return uses_feature_source_name(config.model.name)


def uses_feature_source_name(name: str) -> bool:
    return name == PRECOMPUTED or name.startswith(HF_PREFIX)


def load_feature_source(config: AnalysisConfig, runtime: Runtime) -> FeatureSource:
    """The `load_model` stage for such a config: the embeddings file's header, or the encoder."""
    if config.model.name == PRECOMPUTED:
        scheme, arg = parse_spec(config.dataset.spec)
        if scheme != "embeddings":
            raise InvalidConfigError(f"model {PRECOMPUTED!r} needs an embeddings: dataset, not {scheme!r}",
                                     field="dataset.spec")
        d = config.dataset
        return Precomputed(Path(arg).expanduser(), Columns(d.embedding_column, d.label_column, d.split_column))
    if not transformers_available():
        raise InvalidConfigError("hf: models need the `text` extra (pip install 'redundancy-advisor[text]')",
                                 field="model.name")
    scheme, _ = parse_spec(config.dataset.spec)
    if scheme != "text":
        raise InvalidConfigError(f"hf: models take text: datasets here, not {scheme!r}", field="dataset.spec")
    return HfEncoder(config.model.name, config.layer, config.model.pooling, runtime.allow_download,
                     layers=config.layers)


def model_sources() -> list[dict[str, object]]:
    """The model sources besides timm, and whether this install has what they need (for the catalog)."""
    hf = transformers_available()
    return [
        {"name": PRECOMPUTED, "available": True,
         "detail": "with an embeddings: dataset (the model may be omitted): the file's vectors are the features"},
        {"name": "hf:<name or local directory>", "available": hf,
         "detail": "a Hugging Face encoder over a text: dataset (transformers; offline: the local cache or a directory)"
         + ("" if hf else " — not installed: pip install '.[text]'")},
    ]
