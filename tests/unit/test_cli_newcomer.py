"""Issue 18 on the engine's CLI: every bad field in one answer, shape and meaning alike, and model
suggestions that put the model with weights here first."""

from __future__ import annotations

import pytest

from redundancy.cli.main import EXIT_BAD_INPUT
from service.cli import main


def test_four_bad_fields_are_four_lines(capsys: pytest.CaptureFixture, tmp_path) -> None:
    """Before: two of the four (the shape errors) were reported; the model and the file came later."""
    code = main(["analyze", "--model", "tf_efficientnet_lite", "--weights", "bundled", "--dataset",
                 f"npz:{tmp_path}/absent.npz", "--delta", "5", "--seeds", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    lines = [line for line in err.splitlines() if line.startswith("advisor: error [")]
    assert {line.split("]")[0].removeprefix("advisor: error [") for line in lines} == {
        "seeds", "deltas", "model.name", "dataset.spec"}, err
    assert "did you mean tf_efficientnet_lite0," in err and "absent.npz does not exist" in err


def test_a_missing_checkpoint_is_named_with_the_other_errors(capsys: pytest.CaptureFixture, tmp_path) -> None:
    code = main(["analyze", "--model", "resnet18", "--weights", f"{tmp_path}/none.pth", "--dataset", "mnist",
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert "[model.weights]: checkpoint file not found" in err and "[dataset.spec]: unknown dataset 'mnist'" in err


def test_analyze_takes_o_for_its_report_as_the_client_commands_do() -> None:
    from pathlib import Path

    from service.cli import build_parser

    args = build_parser().parse_args(["analyze", "--model", "resnet18", "--dataset", "digits", "-o", "r.json",
                                      "--delta-mode", "absolute", "--criterion", "worst_seed"])
    assert args.out == Path("r.json")
