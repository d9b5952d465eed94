"""`docs/validation.md` cannot drift from the engine silently: the f* it states on the tiny cached
CIFAR-10 features (`tests/engine/data/validation_tiny.npz`, written by `bench/validation.py`) must equal
what that command's own code computes on them now, and every f* it states must follow from the
seed-mean accuracies it was derived from by the engine's threshold rule."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from redundancy.advice.recommend import threshold

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "validation.md"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_validation", ROOT / "bench" / "validation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _facts(bench: ModuleType) -> dict:
    found = re.search(rf"<!-- {bench.FSTAR_TAG} (\{{.*\}}) -->", DOC.read_text())
    assert found is not None, f"{DOC} has no {bench.FSTAR_TAG} block: regenerate it with bench/validation.py"
    return json.loads(found.group(1))


def test_stated_tiny_fstar_is_what_the_command_computes_now() -> None:
    bench = _bench()
    if not bench.TINY_FEATURES.is_file():
        pytest.fail(f"{bench.TINY_FEATURES} is missing: bench/validation.py writes it")
    assert _facts(bench)["tiny"] == bench.tiny_fstar()


def test_every_stated_fstar_follows_from_its_accuracies_and_is_in_the_text() -> None:
    bench = _bench()
    facts = _facts(bench)
    text = DOC.read_text()
    datasets = [k for k in facts if k != "tiny"]
    assert datasets
    for key in datasets:
        ds = facts[key]
        means = {float(f): a for f, a in ds["means"].items()}
        for delta, stated in ds["fstar"].items():
            bar = threshold(ds["full"], float(delta), ds["mode"])
            expected = next((f for f in sorted(means) if means[f] >= bar - 1e-12), 1.0)
            assert stated == expected, (key, delta, stated, expected)
        title = next(d.title for d in bench.DATASETS if d.key == key)
        shown = " / ".join(bench.fr(ds["fstar"][str(d)]) for d in sorted(bench.DELTAS, reverse=True))
        assert f"**{title}**: full layer" in text and f"f* = {shown} for ratio" in text, (key, shown)
