"""The answer across layers (issue 21, the layer sweep): which layer, and how many of its neurons.

Per swept layer ℓ the job holds a curve (random subsets, baselines) like a single-layer job's. Then:

1. **The reference layer**, chosen without the test set: each layer's full-layer probe has a training-side
   score s_ℓ (seed mean of `selection_score` at k = d_ℓ): the GCV value (lower is better) or the validation
   accuracy (higher is better). ℓ* = argbest_ℓ s_ℓ, ties to the earlier layer. Its full-layer test score
   A* = acc_ℓ*(d_ℓ*) is the reference.
2. **The recommendation** at δ: the bar is τ = (1 − δ)·A* (relative) or A* − δ (absolute); over every layer
   ℓ and tested k ≤ d_ℓ (a layer kept whole counts), the (ℓ, k) with the fewest kept neurons k whose seed
   mean (or worst seed) test score reaches τ; ties go to the earlier layer. When none does, ℓ*'s full layer.

Only step 2 reads test scores, and only to compare them with a bar fixed by step 1. The paired bootstrap
(which resamples the full layer with the subset) is used when the chosen layer is ℓ*; for another layer the
stored interval of its seed-mean score is compared with the fixed bar (`ci_method` says which).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from redundancy.advice.recommend import RANDOM_KINDS, meets, recommend, summarize, threshold
from redundancy.advice.uncertainty import PairedBootstrap
from redundancy.config import Criterion, DeltaMode
from redundancy.report import CurvePoint, Recommendation
from redundancy.verdict import complete


@dataclass
class LayerCurve:
    """One layer's probed curve and what the advice needs beside it."""

    layer: str
    d: int
    curve: list[CurvePoint]
    intervals: dict[int, tuple[float, float]] | None = None
    paired: PairedBootstrap | None = None


def full_selection(curve: Sequence[CurvePoint], d: int) -> tuple[str | None, float | None]:
    """(selection kind, seed mean of the full-layer probe's training-side score); (None, None) when the probe
    recorded none."""
    points = [p for p in curve if p.kind in RANDOM_KINDS and p.k == d and p.selection_score is not None]
    if not points:
        return None, None
    return points[0].selection, float(np.mean([p.selection_score for p in points]))


def choose_reference(layers: Sequence[LayerCurve]) -> int:
    """The index of the layer whose full-layer probe has the best training-side score (GCV: lowest; validation:
    highest); ties to the earlier layer. Raises ValueError when a layer has none or the kinds differ."""
    scored = [full_selection(lc.curve, lc.d) for lc in layers]
    kinds = {k for k, _ in scored}
    if len(layers) == 1:
        return 0
    if None in kinds or any(s is None for _, s in scored) or len(kinds) != 1:
        raise ValueError("every swept layer needs a training-side selection score of one kind to choose a layer")
    sign = 1.0 if kinds == {"gcv"} else -1.0  # minimise gcv, maximise validation accuracy
    keys = [sign * float(s) for _, s in scored]  # type: ignore[arg-type]
    return int(min(range(len(keys)), key=lambda i: (keys[i], i)))


def full_score(lc: LayerCurve) -> float:
    full = next(s for s in summarize(lc.curve) if s.k == lc.d)
    return full.accuracy_mean


def fewest(layers: Sequence[LayerCurve], bar: float, criterion: Criterion) -> tuple[int, int] | None:
    """(layer index, k): the fewest kept neurons over all layers whose score reaches `bar` (a layer's full width
    counts: an earlier layer kept whole is an answer); ties to the earlier layer. None when none reaches it."""
    best: tuple[int, int] | None = None
    for i, lc in enumerate(layers):
        s = next((s for s in summarize(lc.curve) if s.k <= lc.d and meets(s, bar, criterion)), None)
        if s is not None and (best is None or s.k < best[1]):
            best = (i, s.k)
    return best


def on_own_layer(rec: Recommendation, layer: str) -> Recommendation:
    """A single-layer answer as the sweep of one names it: `layer` is both its layer and its reference, the
    reference score its own full-layer score (what `across_layers` gives for one layer)."""
    return rec.model_copy(update={"layer": layer, "reference_layer": layer, "reference_score": rec.full_accuracy})


def across_layers(
    layers: Sequence[LayerCurve], classes: list[str], delta: float, mode: DeltaMode = "relative",
    criterion: Criterion = "mean", reference: int | None = None,
) -> Recommendation:
    """The recommendation at δ across layers (see the module docstring), complete with its methods and verdict
    on the chosen layer's curve."""
    ref = choose_reference(layers) if reference is None else reference
    ref_score = full_score(layers[ref])
    hit = fewest(layers, threshold(ref_score, delta, mode), criterion)
    i = ref if hit is None else hit[0]
    lc = layers[i]
    rec = recommend(lc.curve, classes, lc.d, delta, mode, criterion, lc.intervals,
                    lc.paired if i == ref else None, reference=ref_score)
    rec = complete(rec, lc.curve, classes)
    note = rec.note
    if len(layers) > 1:
        note = (f"Layer {lc.layer} of {len(layers)} swept; δ applies to the full-layer score {ref_score:.4f} of the "
                f"reference layer {layers[ref].layer} (best training-side score of its full-layer probe, no test "
                f"data). " + note)
    return rec.model_copy(update={"layer": lc.layer, "reference_layer": layers[ref].layer,
                                  "reference_score": ref_score, "note": note})
