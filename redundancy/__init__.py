"""Diffused-redundancy analysis of pre-trained representations (Nanda et al., NeurIPS 2023).

    from redundancy import AnalysisConfig, analyze
    report = analyze(AnalysisConfig(model={"name": "tf_efficientnet_lite0", "weights": "bundled"},
                                    dataset={"spec": "digits"}))

`import redundancy` loads pydantic only: `analyze` (and with it torch and timm) is imported on first
use, so the service, the command line's `--help` and `redundancy.report` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redundancy.config import PAPER_FRACTIONS, AnalysisConfig, DatasetSpec, ModelSpec
from redundancy.progress import ProgressEvent
from redundancy.report import Report
from redundancy.runtime import Runtime

if TYPE_CHECKING:
    from redundancy.pipeline import analyze

__version__ = "0.1.0"

__all__ = [
    "PAPER_FRACTIONS",
    "AnalysisConfig",
    "DatasetSpec",
    "ModelSpec",
    "ProgressEvent",
    "Report",
    "Runtime",
    "__version__",
    "analyze",
]


def __getattr__(name: str) -> Any:
    """`redundancy.analyze` imports the pipeline (torch, timm) on first access, not at `import redundancy`."""
    if name == "analyze":
        from redundancy.pipeline import analyze  # lazy: torch and timm only when an analysis is asked for

        return analyze
    raise AttributeError(f"module 'redundancy' has no attribute {name!r}")
