"""Diffused-redundancy analysis of pre-trained representations (Nanda et al., NeurIPS 2023).

    from redundancy import AnalysisConfig, analyze
    report = analyze(AnalysisConfig(model={"name": "tf_efficientnet_lite0", "weights": "bundled"},
                                    dataset={"spec": "digits"}))
"""

from redundancy.config import PAPER_FRACTIONS, AnalysisConfig, DatasetSpec, ModelSpec
from redundancy.pipeline import ProgressEvent, analyze
from redundancy.report import Report
from redundancy.runtime import Runtime

__all__ = [
    "PAPER_FRACTIONS",
    "AnalysisConfig",
    "DatasetSpec",
    "ModelSpec",
    "ProgressEvent",
    "Report",
    "Runtime",
    "analyze",
]
