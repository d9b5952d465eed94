"""From a finished analysis to files: one artifact per recommendation (`advisor analyze --export DIR`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from redundancy.deploy.artifact import build_artifact, save_artifact
from redundancy.deploy.errors import ArtifactError
from redundancy.deploy.head import model_facts
from redundancy.deploy.layers import layer_report, layer_stats
from redundancy.deploy.retrieval import build_retrieval_artifact
from redundancy.report import Recommendation, Report
from redundancy.sources.models import load_model
from redundancy.sources.stats import GramStats


def report_model_facts(report: Report) -> tuple[str, dict[str, Any]]:
    """Reload the report's model (as the analysis did) for its backbone hash and data config."""
    m = report.config.model
    return model_facts(load_model(m.name, m.weights, seed=report.config.seed), report.config.image_size)


def artifact_name(report: Report, rec: Recommendation) -> str:
    """A file name that says what the artifact is: model, layer, δ, mode, criterion."""
    raw = f"{report.model.name}_{report.model.layer}_delta{rec.delta:g}_{rec.mode}_{rec.criterion}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", raw) + ".safetensors"


def export_artifacts(
    report: Report, out_dir: str | Path, stats: GramStats | None, facts: tuple[str, dict[str, Any]] | None = None
) -> list[Path]:
    """Write one artifact (and its model card) per recommendation of `report` into `out_dir`, fitted
    from `stats` (`run_analysis(...).stats`, or a job's saved ones: `load_stats`). Without `facts`
    (`run_analysis(...).model_facts`) the model is reloaded for them (`report_model_facts`). A retrieval
    report's artifacts are the kept dimensions of its random subsets (`build_retrieval_artifact`): no head,
    no model reloaded."""
    out = Path(out_dir)
    if report.config.task == "retrieval":
        return [save_artifact(build_retrieval_artifact(report, rec, stats=stats), out / artifact_name(report, rec))
                for rec in report.recommendations]
    if stats is None:
        raise ArtifactError("no statistics to fit the heads from; pass the analysis's or the job's saved ones "
                            "(load_stats)", field="stats")
    sha, data_config = facts or report_model_facts(report)
    out_paths = []
    for rec in report.recommendations:
        view = layer_report(report, rec.layer)  # a sweep: the answer's layer, its block of the joined statistics
        art = build_artifact(view, layer_stats(view, stats), rec, weights_sha256=sha, data_config=data_config)
        out_paths.append(save_artifact(art, out / artifact_name(view, rec)))
    return out_paths
