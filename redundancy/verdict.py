"""Which reduction to ship: every method the job ran side by side, budgets, fairness as a hard limit,
and the storage a kept width costs. Pure functions over stored curve points (nothing is re-probed).

- **Methods** (`METHODS`): random subsets (grid and refinement points), the first k neurons, PCA, random
  projections. Each is answered at its fewest dimensions meeting δ by the recommendation's own rule
  (`advice.threshold` for the bar, `advice.meets` for the criterion), with its fairness against the
  full layer per seed (`advice.fairness_at`).
- **Verdict**: the method with the fewest kept dimensions among those that meet δ below d; ties go
  to the cheaper serving (a slice < a gather < a d × k matrix product plus a mean, `SERVING`).
- **Nested**: first-k at least as good as the random subsets at every k both tested below d, within
  the random subsets' seed spread (`first_k ≥ mean − std`).
- **Fairness limits**: the smallest k meeting δ with `worst_class_change ≥ −max_worst_class_drop`
  and `gini_change ≤ max_gini_increase` (absolute; both per seed, as `fairness_at` computes them).
- **Budgets**: the best score each method reaches at k ≤ `budgets.budget_k`, with its fairness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redundancy.advice.recommend import (
    RANDOM_KINDS,
    Intervals,
    criterion_stat,
    fairness_at,
    meets,
    recommend,
    summarize,
)
from redundancy.advice.uncertainty import PairedBootstrap
from redundancy.budgets import BYTES_PER_DIM, INDEX_LIMITS, MILLION, budget_k, bytes_per_vector, fits_indexes
from redundancy.config import Criterion, DeltaMode
from redundancy.errors import InvalidConfigError
from redundancy.report import (
    BudgetAnswer,
    BudgetMethod,
    ConstrainedAnswer,
    CurvePoint,
    Fairness,
    FractionSummary,
    MethodAnswer,
    QuantisedScore,
    Recommendation,
    Storage,
    StorageWidth,
    Verdict,
)

# method → the curve kinds behind it
METHODS: dict[str, tuple[str, ...]] = {
    "random_subset": RANDOM_KINDS,
    "first_k": ("first_k",),
    "pca": ("pca",),
    "random_projection": ("random_projection",),
}
# method → (serving rank, what it costs per vector): the verdict's tie-break
SERVING: dict[str, tuple[int, str]] = {
    "first_k": (0, "a slice: the first k of the d values, no arithmetic"),
    "random_subset": (1, "a gather: k of the d values by index"),
    "pca": (2, "a d × k matrix product plus a mean (subtract the mean, project; standardisation folds in)"),
    "random_projection": (2, "a d × k matrix product plus a mean (the mean folds into the head's bias)"),
}


@dataclass(frozen=True)
class FairnessLimits:
    """Absolute limits: the worst class may lose at most `max_worst_class_drop`; Gini may rise at most
    `max_gini_increase`. None: no limit on that metric."""

    max_worst_class_drop: float | None = None
    max_gini_increase: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_worst_class_drop", "max_gini_increase"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise InvalidConfigError(f"{name} {v} is outside [0, 1]", field=name)

    @property
    def active(self) -> bool:
        return self.max_worst_class_drop is not None or self.max_gini_increase is not None

    def allows(self, f: Fairness) -> bool:
        drop_ok = self.max_worst_class_drop is None or f.worst_class_change >= -self.max_worst_class_drop - 1e-12
        gini_ok = self.max_gini_increase is None or f.gini_change <= self.max_gini_increase + 1e-12
        return drop_ok and gini_ok


@dataclass(frozen=True)
class Budget:
    max_dims: int | None = None
    max_bytes: int | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in BYTES_PER_DIM:
            raise InvalidConfigError(f"dtype {self.dtype!r} is not one of {', '.join(BYTES_PER_DIM)}", field="dtype")

    @property
    def active(self) -> bool:
        return self.max_dims is not None or self.max_bytes is not None


class _Curve:
    """The curve summarised per method, with per-seed fairness against the full layer."""

    def __init__(self, curve: Sequence[CurvePoint], classes: list[str], d: int) -> None:
        self.curve, self.classes, self.d = curve, classes, d
        self.summaries = {m: summarize(curve, kinds=kinds) for m, kinds in METHODS.items()}
        self.summaries = {m: s for m, s in self.summaries.items() if s}
        random = self.summaries.get("random_subset", [])
        full = next((s for s in random if s.k == d), None)
        if full is None:
            raise InvalidConfigError(f"the curve has no full-layer point (k = d = {d})", field="curve")
        self.full = full

    def fairness(self, method: str, k: int) -> Fairness:
        return fairness_at(self.curve, self.classes, self.d, k, METHODS[method])

    def answer(self, method: str, s: FractionSummary, criterion: Criterion, met: bool) -> MethodAnswer:
        rank, serving = SERVING[method]
        return MethodAnswer(
            method=method, k=s.k, fraction=s.k / self.d, score=criterion_stat(s, criterion), met_below_full=met,
            seeds=s.seeds, fairness=self.fairness(method, s.k), serving=serving, serving_rank=rank,
        )

    def fewest(
        self, method: str, bar: float, criterion: Criterion, limits: FairnessLimits | None = None
    ) -> MethodAnswer:
        """The fewest dims below d meeting the bar (and the limits); else the full layer (met False; the full
        layer always meets the limits: its changes are 0)."""
        for s in self.summaries[method]:
            if s.k < self.d and meets(s, bar, criterion):
                a = self.answer(method, s, criterion, True)
                if limits is None or limits.allows(a.fairness):
                    return a
        a = self.answer("random_subset", self.full, criterion, False)
        return a.model_copy(update={"method": method, "serving": SERVING[method][1],
                                    "serving_rank": SERVING[method][0]})


def side_by_side(
    curve: Sequence[CurvePoint], classes: list[str], d: int, bar: float, criterion: Criterion,
    limits: FairnessLimits | None = None,
) -> list[MethodAnswer]:
    """Each method the curve holds at its fewest dimensions meeting `bar` (and the limits)."""
    c = _Curve(curve, classes, d)
    return [c.fewest(m, bar, criterion, limits) for m in c.summaries]


def choose(methods: Sequence[MethodAnswer], d: int) -> Verdict:
    """The fewest kept dimensions among the methods meeting δ below d; ties to the cheaper serving."""
    met = [m for m in methods if m.met_below_full]
    if not met:
        return Verdict(method="full_layer", k=d, reason=f"no method meets δ below d = {d}: keep the full layer")
    best = min(met, key=lambda m: (m.k, m.serving_rank))
    tied = [m.method for m in met if m.k == best.k and m is not best]
    reason = f"{best.method} keeps {best.k} of {d} dimensions, the fewest of the methods meeting δ"
    if tied:
        reason += f" (tied with {', '.join(tied)}; {best.method} is cheaper to serve: {best.serving})"
    return Verdict(method=best.method, k=best.k, reason=reason)


def nested(curve: Sequence[CurvePoint], d: int) -> tuple[bool | None, str | None]:
    """First-k at least as good as random subsets at every k both tested below d, within the random
    subsets' spread (seed mean − seed std); None when first_k was not run or shares no k."""
    first = {s.k: s for s in summarize(curve, kinds=("first_k",)) if s.k < d}
    random = {s.k: s for s in summarize(curve) if s.k < d}
    common = sorted(set(first) & set(random))
    if not common:
        return None, None
    worse = [k for k in common if first[k].accuracy_mean < random[k].accuracy_mean - random[k].accuracy_std - 1e-12]
    if worse:
        return False, (f"first-k falls below the random subsets' spread at k = {', '.join(map(str, worse[:5]))}: "
                       "the layer is not nested")
    return True, (f"first-k is at least as good as random subsets at every tested k ({len(common)} sizes): the "
                  "layer is nested (Matryoshka-like), the first k are the cut to use")


def storage_at(k: int) -> StorageWidth:
    per = {dt: bytes_per_vector(k, dt) for dt in BYTES_PER_DIM}
    return StorageWidth(k=k, bytes_per_vector=per, bytes_per_million={dt: b * MILLION for dt, b in per.items()},
                        fits=fits_indexes(k))


def storage(d: int, k: int) -> Storage:
    limits = ", ".join(f"{name} ≤ {limit}" for name, limit in INDEX_LIMITS.items())
    return Storage(full=storage_at(d), verdict=storage_at(k),
                   note=f"int8 adds one offset and scale per dimension for the whole index; index limits: {limits}")


def constrained(
    curve: Sequence[CurvePoint], classes: list[str], d: int, bar: float, criterion: Criterion, limits: FairnessLimits
) -> ConstrainedAnswer:
    """The smallest random-subset k meeting the bar and both limits, each method likewise, or a statement
    that none below d does."""
    methods = side_by_side(curve, classes, d, bar, criterion, limits)
    top = next(m for m in methods if m.method == "random_subset")
    lim = (f"worst-class change ≥ −{limits.max_worst_class_drop}" if limits.max_worst_class_drop is not None else "",
           f"Gini change ≤ {limits.max_gini_increase}" if limits.max_gini_increase is not None else "")
    said = " and ".join(x for x in lim if x)
    if top.met_below_full:
        note = f"{top.k} of {d} neurons is the smallest tested subset meeting δ with {said}."
    else:
        note = f"No tested fraction below 1 meets δ with {said}; keep the full layer ({d} neurons)."
    return ConstrainedAnswer(
        max_worst_class_drop=limits.max_worst_class_drop, max_gini_increase=limits.max_gini_increase,
        met=top.met_below_full, k=top.k, fraction=top.fraction, score=top.score, fairness=top.fairness,
        methods=methods, note=note,
    )


def within_budget(
    curve: Sequence[CurvePoint], classes: list[str], d: int, criterion: Criterion, budget: Budget,
    quantised: Sequence[QuantisedScore] = (),
) -> BudgetAnswer:
    """The best score each method reaches at k ≤ the budget's widest k (ties: fewer dims), with its fairness."""
    c = _Curve(curve, classes, d)
    kmax = budget_k(d, budget.max_dims, budget.max_bytes, budget.dtype)
    int8 = {(q.method, q.k): q.accuracy_quantised for q in quantised if q.dtype == "int8"}
    out = []
    for method, summary in c.summaries.items():
        fit = [s for s in summary if s.k <= kmax]
        if not fit:
            out.append(BudgetMethod(method=method, k=None))
            continue
        s = max(fit, key=lambda x: (criterion_stat(x, criterion), -x.k))
        score = criterion_stat(s, criterion)
        out.append(BudgetMethod(
            method=method, k=s.k, score=score, fraction_of_full=score / c.full.accuracy_mean if c.full.accuracy_mean
            else None, bytes_per_vector=bytes_per_vector(s.k, budget.dtype), fairness=c.fairness(method, s.k),
            int8_score=int8.get((method, s.k)) if budget.dtype == "int8" else None,
        ))
    scored = [m for m in out if m.score is not None]
    best = max(scored, key=lambda m: (m.score or 0.0, -(m.k or 0))).method if scored else None
    note = (f"the widest k the budget allows is {kmax}" + ("" if scored else "; no tested k fits it")
            + (": int8 scores are measured only at the job's recommended k (`int8_score`); `score` is the float "
               "probe" if budget.dtype == "int8" else ""))
    return BudgetAnswer(max_dims=budget.max_dims, max_bytes=budget.max_bytes, dtype=budget.dtype, max_k=kmax,
                        methods=out, best=best, note=note)


def complete(
    rec: Recommendation, curve: Sequence[CurvePoint], classes: list[str], *,
    limits: FairnessLimits | None = None, budget: Budget | None = None, quantised: Sequence[QuantisedScore] = (),
) -> Recommendation:
    """The recommendation with its methods, verdict and storage (computed when a stored one lacks them),
    and the budget and fairness-limit answers when asked for."""
    d = rec.d
    bar = rec.threshold  # `advice.threshold` of this δ, as the recommendation computed it
    methods = rec.methods or side_by_side(curve, classes, d, bar, rec.criterion)
    verdict = rec.verdict
    if verdict is None:
        verdict = choose(methods, d)
        flag, note = nested(curve, d)
        verdict = verdict.model_copy(update={"nested": flag, "nested_note": note})
    update: dict[str, object] = {"methods": methods, "verdict": verdict, "storage": storage(d, verdict.k)}
    if budget is not None and budget.active:
        update["budget"] = within_budget(curve, classes, d, rec.criterion, budget, quantised)
    if limits is not None and limits.active:
        update["constrained"] = constrained(curve, classes, d, bar, rec.criterion, limits)
    return rec.model_copy(update=update)


def advise(
    curve: Sequence[CurvePoint], classes: list[str], d: int, delta: float, mode: DeltaMode = "relative",
    criterion: Criterion = "mean", intervals: Intervals | None = None, paired: PairedBootstrap | None = None,
) -> Recommendation:
    """`advice.recommend` with every method side by side, the verdict and the storage."""
    return complete(recommend(curve, classes, d, delta, mode, criterion, intervals, paired), curve, classes)
