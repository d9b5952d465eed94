"""Load a timm model with a weights source, and read a layer's representation from it."""

from redundancy.sources.models.layers import FeatureExtractor
from redundancy.sources.models.loading import LoadedModel, load_model

__all__ = ["FeatureExtractor", "LoadedModel", "load_model"]
