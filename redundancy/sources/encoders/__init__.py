"""Features without a timm model (issue 19): precomputed vectors (`embeddings:` datasets, model
`precomputed`) and Hugging Face encoders (`hf:<name or local directory>` over `text:` datasets).

`uses_feature_source(config)` says whether a config takes this path; `load_feature_source` is its
`load_model` stage. The pipeline hands the source to `extract_rows`, which asks it for feature
batches instead of running images through a timm model."""

from __future__ import annotations

from redundancy.sources.encoders.base import FeatureSource
from redundancy.sources.encoders.sources import (
    load_feature_source,
    model_sources,
    uses_feature_source,
    uses_feature_source_name,
)

__all__ = ["FeatureSource", "load_feature_source", "model_sources", "uses_feature_source", "uses_feature_source_name"]
