"""`subsets: nested` (the paper's protocol): per seed one permutation, each fraction its first
floor(f·d) neurons; `independent` stays the default draw."""

from __future__ import annotations

import numpy as np
import pytest

from redundancy.config import PAPER_FRACTIONS, AnalysisConfig
from redundancy.pipeline import run_probes
from redundancy.probing.subsets import draw_subset, plan_subsets, sample_subset, seed_permutation
from redundancy.sources.extraction import Features
from redundancy.sources.stats import GramStats

D = 1280


def test_nested_subsets_are_prefixes_of_one_permutation_per_seed() -> None:
    plan = plan_subsets(list(PAPER_FRACTIONS), D, 5, "nested")
    assert [k for _, k, _ in plan.entries] == sorted({int(f * D) for f in PAPER_FRACTIONS} - {0})
    for seed in range(5):
        perm = seed_permutation(D, seed, master_seed=7)
        assert sorted(perm.tolist()) == list(range(D))
        previous: set[int] = set()
        for _, k, _ in plan.entries:
            got = draw_subset(D, k, seed, 7, "nested")
            np.testing.assert_array_equal(got, np.sort(perm[:k]))  # the first k of this seed's permutation
            assert previous <= set(got.tolist())  # hence nested
            previous = set(got.tolist())
    assert not np.array_equal(seed_permutation(D, 0, 7)[:64], seed_permutation(D, 1, 7)[:64])


def test_independent_stays_the_default_and_is_not_nested() -> None:
    assert AnalysisConfig(model={"name": "m"}, dataset={"spec": "digits"}).subsets == "independent"
    np.testing.assert_array_equal(draw_subset(D, 128, 0, 7), sample_subset(D, 128, 0, 7))
    assert not set(draw_subset(D, 64, 0, 7).tolist()) <= set(draw_subset(D, 128, 0, 7).tolist())
    with pytest.raises(ValueError, match="subsets"):
        draw_subset(D, 4, 0, 0, "prefix")  # type: ignore[arg-type]


def test_the_pipeline_probes_the_nested_subsets() -> None:
    rng = np.random.default_rng(0)
    d, n = 30, 260
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(3, d))[y] + rng.normal(size=(n, d))
    f = Features(GramStats.from_features(x[:160], y[:160], 3), x[:160], y[:160], x[160:180], y[160:180],
                 x[180:], y[180:], "synthetic")
    cfg = AnalysisConfig(model={"name": "m"}, dataset={"spec": "s"}, fractions=[0.1, 0.5, 1.0], seeds=2,
                         baselines=[], bootstrap=0, subsets="nested", seed=3)
    curve = run_probes(cfg, f).curve
    from redundancy.probing.cka import GramCKA

    cka = GramCKA(GramStats.from_features(x[:180], y[:180], 3).centred_gram())
    for p in curve:
        assert p.k == (int(p.fraction * d) if p.k < d else d)
        assert p.cka == pytest.approx(cka(np.sort(seed_permutation(d, p.seed, 3)[: p.k])), rel=1e-9)


def test_the_field_reaches_the_cli_and_the_api_schema() -> None:
    from redundancy.cli.options import config_options
    from service.api.schemas import JobCreate

    flag = next(o for o in config_options() if o.flag == "--subsets")
    assert flag.choices == ("independent", "nested") and flag.default == "independent"
    prop = JobCreate.model_json_schema()["properties"]["subsets"]
    assert prop["default"] == "independent" and set(prop["enum"]) == {"independent", "nested"}
