"""`advisor analyze`: a table and a JSON report on success; one clear line and a non-zero exit on error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from redundancy.report import Report
from service.cli import main

TINY = ["analyze", "--model", "resnet18", "--weights", "random", "--dataset", "digits", "--max-train", "200",
        "--max-test", "100", "--image-size", "32", "--fractions", "0.1,0.5", "--seeds", "2", "--quiet",
        "--bootstrap", "100"]


def test_success_prints_the_table_and_writes_report_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out, plot = tmp_path / "r.json", tmp_path / "p.svg"
    code = main([*TINY, "--delta", "0.05", "--delta", "0.2", "--delta-mode", "absolute", "--no-cache",
                 "--out", str(out), "--plot", str(plot)])
    assert code == 0
    text = capsys.readouterr().out
    assert "WARNING  the weights were random" in text
    assert "fraction" in text and "full-layer accuracy" in text and "baselines (ridge)" in text
    report = Report.model_validate(json.loads(out.read_text()))
    assert [r.delta for r in report.recommendations] == [0.05, 0.2]
    assert report.config.delta_mode == "absolute" and report.config.fractions == [0.1, 0.5, 1.0]
    assert plot.read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--fractions", "0.1,1.5"], 2, "fractions: Value error, fraction 1.5 is outside (0, 1]"),
        (["--delta", "1.2"], 2, "deltas: Value error, delta 1.2 is outside [0, 1)"),
        (["--dataset", "mnist"], 1, "error [dataset.spec]: unknown dataset 'mnist'"),
        (["--model", "resnet181"], 1, "error [model.name]: unknown timm model 'resnet181'"),
        (["--weights", "/nope/ckpt.safetensors"], 1, "error [model.weights]: checkpoint file not found"),
    ],
)
def test_errors_are_one_line_and_non_zero(
    args: list[str], code: int, message: str, capsys: pytest.CaptureFixture
) -> None:
    assert main([*TINY, "--no-cache", *args]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("advisor: ") and message in err[0], err
