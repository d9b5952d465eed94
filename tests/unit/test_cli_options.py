"""The CLI's analysis flags and `AnalysisConfig` never diverge: every field has a flag, every flag's
default is the field's default, and `--help` shows it."""

from __future__ import annotations

import argparse
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from redundancy.cli.main import add_analyze_arguments, config_from_args
from redundancy.cli.options import config_options, show
from redundancy.config import AnalysisConfig

REQUIRED = ["--model", "resnet18", "--dataset", "digits"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="advisor analyze")
    add_analyze_arguments(p)
    return p


def _leaf_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every leaf field of the config (walked here, not by the code under test) → its FieldInfo."""
    out: dict[tuple[str, ...], Any] = {}
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            out |= _leaf_fields(info.annotation, (*prefix, name))
        else:
            out[(*prefix, name)] = info
    return out


def test_every_config_field_has_a_flag_with_the_configs_default() -> None:
    fields = _leaf_fields(AnalysisConfig)
    actions = {a.dest: a for a in _parser()._actions}
    assert {opt.path for opt in config_options()} == set(fields)
    for path, info in fields.items():
        action = actions["config__" + "__".join(path)]
        want = None if info.is_required() else info.get_default(call_default_factory=True)
        assert action.default == want, (path, action.default, want)
        assert info.description, f"AnalysisConfig field {path} needs a description: it is the flag's help"
        assert info.description.replace("`", "").rstrip(".") in action.help.replace("%%", "%"), path


def test_no_flags_give_exactly_the_default_config() -> None:
    args = _parser().parse_args(REQUIRED)
    assert config_from_args(args) == AnalysisConfig(model={"name": "resnet18"}, dataset={"spec": "digits"})


def test_help_shows_every_default() -> None:
    text = " ".join(_parser().format_help().split())
    for opt in config_options():
        start = text.index(f"{opt.flag} ", text.index("analysis (each flag"))
        after = text[start:]
        ends = [after.find(f" {o.flag} ") for o in config_options() if o.flag != opt.flag]
        segment = after[: min([e for e in ends if e > 0], default=len(after))]
        want = "(required)" if opt.required else f"(default: {show(opt.default)})"
        assert want in segment, (opt.flag, segment)


def test_every_flag_reaches_its_field() -> None:
    values = {"--weights": "bundled", "--max-train": "50", "--max-test": "40", "--layer": "layer3",
              "--image-size": "64", "--fractions": "0.25,0.75", "--seeds": "3", "--probe": "logistic",
              "--delta": "0.02", "--delta-mode": "absolute", "--criterion": "worst_seed", "--seed": "7",
              "--val-fraction": "0.2", "--batch-size": "16", "--baselines": "pca", "--cka": "debiased",
              "--refine": "0.01", "--bootstrap": "50", "--ci-level": "0.9", "--logistic-epochs": "4",
              "--logistic-lr": "0.5", "--logistic-weight-decay": "0.001", "--logistic-batch-size": "32",
              "--lambda-select": "val", "--feature-dtype": "float32", "--subsets": "nested",
              "--logistic-solver": "sgd", "--pooling": "cls",
              "--embedding-column": "vec", "--text-column": "body", "--label-column": "y", "--split-column": "part",
              "--test-fraction": "0.3", "--task": "retrieval", "--metric": "map@10", "--similarity": "dot"}
    alone = {"--cka-protocol": "paper"}  # refused beside --cka debiased: given in a run of its own
    flags = {opt.flag for opt in config_options()}
    values = {flag: v for flag, v in values.items() if flag in flags}  # fields not (yet) in this config
    alone = {flag: v for flag, v in alone.items() if flag in flags}
    # --layers (not beside --layer): tests/unit/test_layer_sweep.py
    missing = flags - set(values) - set(alone) - {"--model", "--dataset", "--layers"}
    assert not missing, f"add the new flags to this test: {missing}"
    # an hf: model over a text: dataset: the one pairing every flag (`--pooling` too) is valid with
    for given in (values, alone):
        argv = ["--model", "hf:x/y", "--dataset", "text:/t.csv", *(x for kv in given.items() for x in kv)]
        cfg = config_from_args(_parser().parse_args(argv)).model_dump()
        for opt in config_options():
            if opt.flag in given:
                node: Any = cfg
                for part in opt.path:
                    node = node[part]
                default = opt.default
                assert node != default, (opt.flag, node)


def test_lists_are_comma_separated_repeatable_and_none_is_empty() -> None:
    p = _parser()
    cfg = config_from_args(p.parse_args([*REQUIRED, "--delta", "0.05,0.01", "--delta", "0.2", "--baselines", "none"]))
    assert cfg.deltas == [0.01, 0.05, 0.2] and cfg.baselines == []
    assert config_from_args(p.parse_args(REQUIRED)).deltas == [0.01, 0.05, 0.1]


def test_a_new_config_field_gets_a_flag_from_its_description_and_default() -> None:
    class Extended(AnalysisConfig):
        lambda_select: Literal["gcv", "val"] = Field("gcv", description="How ridge chooses λ.")
        keep_weights: bool = Field(False, description="Keep the probes' weights.")

    opts = {o.name: o for o in config_options(Extended)}
    sel, keep = opts["lambda_select"], opts["keep_weights"]
    assert (sel.flag, sel.default, sel.choices) == ("--lambda-select", "gcv", ("gcv", "val"))
    assert (keep.flag, keep.default, keep.scalar) == ("--keep-weights", False, bool)


def test_a_field_the_cli_cannot_express_fails_loudly() -> None:
    class Odd(AnalysisConfig):
        weights_by_class: dict[str, float] = Field(default_factory=dict)

    with pytest.raises(TypeError, match="weights_by_class"):
        config_options(Odd)
