"""Artifacts for several datasets at once: one head per dataset on the same kept neurons (the answer
itself is `redundancy.advice.multitask.recommend_multitask`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redundancy.advice.multitask import MultiTaskRecommendation, TaskCurve, check_compatible
from redundancy.advice.recommend import RANDOM_KINDS
from redundancy.deploy.artifact import Artifact, build_artifact, choose_seed
from redundancy.deploy.layers import layer_stats
from redundancy.report import Report
from redundancy.sources.stats import GramStats


def build_multitask_artifacts(
    reports: Mapping[str, Report],
    stats: Mapping[str, GramStats],
    answer: MultiTaskRecommendation,
    *,
    weights_sha256: str,
    data_config: dict[str, Any],
) -> dict[str, Artifact]:
    """One artifact per dataset at the common `k`, all with the same indices: the seed is chosen once,
    over every dataset's points (`choose_seed`), and each head is fitted from its own statistics."""
    check_compatible({name: TaskCurve.from_report(r) for name, r in reports.items()})
    seed = choose_seed(*([p for p in r.curve if p.kind in RANDOM_KINDS and p.k == answer.k] for r in reports.values()))
    return {
        name: build_artifact(r, layer_stats(r, stats[name]), answer, weights_sha256=weights_sha256,
                             data_config=data_config, seed=seed)  # a sweep: its reference layer's block
        for name, r in reports.items()
    }
