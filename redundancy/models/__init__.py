"""Load a timm model with a weights source, and read a layer's representation from it."""

from redundancy.models.layers import FeatureExtractor
from redundancy.models.loading import LoadedModel, load_model

__all__ = ["FeatureExtractor", "LoadedModel", "load_model"]
