"""The advice as a deliverable: the kept neurons, a linear head on them, and what they save.

    from redundancy.deploy import attach, load_artifact
    art = load_artifact("head.safetensors")
    clf = attach(timm_model, art)        # clf(images) -> logits of the compressed classifier
    cut = reducer(art)                   # a retrieval artifact (no head): cut(embeddings) -> kept dims
"""

from redundancy.advice.multitask import MultiTaskRecommendation, TaskCurve, recommend_multitask
from redundancy.deploy.artifact import (
    Artifact,
    build_artifact,
    choose_seed,
    fit_head,
    load_artifact,
    save_artifact,
)
from redundancy.deploy.errors import ArtifactError, IncompatibleTasksError
from redundancy.deploy.export import export_artifacts, report_model_facts
from redundancy.deploy.head import (
    DimensionReducer,
    SubsetClassifier,
    SubsetHead,
    attach,
    backbone_sha256,
    model_facts,
    reducer,
)
from redundancy.deploy.layers import layer_report, layer_stats
from redundancy.deploy.methods import ARTIFACT_METHODS, build_method_artifact
from redundancy.deploy.multitask import build_multitask_artifacts
from redundancy.deploy.retrieval import build_retrieval_artifact
from redundancy.sources.features_store import load_stats, save_stats

__all__ = [
    "ARTIFACT_METHODS",
    "Artifact",
    "ArtifactError",
    "DimensionReducer",
    "IncompatibleTasksError",
    "MultiTaskRecommendation",
    "SubsetClassifier",
    "SubsetHead",
    "TaskCurve",
    "attach",
    "backbone_sha256",
    "build_artifact",
    "build_method_artifact",
    "build_multitask_artifacts",
    "build_retrieval_artifact",
    "choose_seed",
    "export_artifacts",
    "fit_head",
    "layer_report",
    "layer_stats",
    "load_artifact",
    "load_stats",
    "model_facts",
    "reducer",
    "recommend_multitask",
    "report_model_facts",
    "save_artifact",
    "save_stats",
]
