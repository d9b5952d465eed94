"""A head on any layer of a sweep (issue 21): the report and statistics of one swept layer.

A sweep's report is its reference layer's (`model`, `curve`, `summary`), with every layer in `layers[]`;
its statistics (`Analysis.stats`, a job's kept file) are the joined ones of all its layers' columns, in the
order of `layers[]`, each layer's diagonal block exactly the statistics its own probe was fitted from
(`redundancy.pipeline.sweep_stats`). `layer_report` is the report seen from one layer (its name, width,
pooling, curve and summary: what `build_artifact` reads) and `layer_stats` cuts that layer's block out.
A single-layer report is its own view. A sweep written before the joined statistics were kept holds its
reference layer's statistics only: a head on another layer is refused naming `layer`.
"""

from __future__ import annotations

from redundancy.deploy.errors import ArtifactError
from redundancy.report import Report
from redundancy.sources.stats import GramStats


def layer_report(report: Report, layer: str | None) -> Report:
    """`report` as seen from its swept `layer` (None, or its own layer: `report` itself)."""
    if layer is None or layer == report.model.layer or len(report.layers) < 2:
        return report
    x = next((x for x in report.layers if x.layer == layer), None)
    if x is None:
        names = ", ".join(x.layer for x in report.layers)
        raise ArtifactError(f"{layer!r} was not probed by this job; its layers: {names}", field="layer")
    model = report.model.model_copy(update={"layer": x.layer, "d": x.d, "layer_pooling": x.pooling})
    return report.model_copy(update={"model": model, "curve": x.curve, "summary": x.summary,
                                     "full_accuracy": x.full_accuracy})


def layer_stats(report: Report, stats: GramStats) -> GramStats:
    """The statistics of `report.model.layer` (a `layer_report` view) out of a sweep's joined `stats`."""
    widths = [x.d for x in report.layers]
    if len(widths) < 2:
        return stats
    if stats.d == sum(widths):
        i = [x.layer for x in report.layers].index(report.model.layer)
        start = sum(widths[:i])
        return stats.columns(start, start + widths[i])
    if any(x.reference and x.layer == report.model.layer for x in report.layers):
        return stats  # an older sweep's statistics: its reference layer's only
    raise ArtifactError(
        f"this job kept the statistics of its reference layer only (an older engine), not of layer "
        f"{report.model.layer!r}: submit it again, or a job with layers: [{report.model.layer!r}]", field="layer")
