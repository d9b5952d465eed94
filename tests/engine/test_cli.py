"""`advisor analyze`: a readable table and a JSON report on success; every bad input one line per field,
`advisor: error [field]: reason`, naming every bad value, and exit code 2."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from redundancy.cli.main import EXIT_BAD_INPUT, EXIT_OK
from redundancy.cli.table import format_report, what_to_do
from redundancy.report import Report
from service.cli import main

# resnet18: d = 512, so fraction 0.0005 rounds to k = 0 and is skipped; 200 train images cap PCA's rank
TINY = ["analyze", "--model", "resnet18", "--weights", "random", "--dataset", "digits", "--max-train", "200",
        "--max-test", "100", "--image-size", "32", "--fractions", "0.0005,0.1,0.5", "--seeds", "2", "--quiet",
        "--bootstrap", "100"]
ERROR = re.compile(r"advisor: error \[[^\]]+\]: .+")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Report, Path]:
    """One real analysis through the CLI: its printed table, its JSON report and its plot."""
    tmp = tmp_path_factory.mktemp("cli")
    out, plot = tmp / "r.json", tmp / "p.svg"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main([*TINY, "--delta", "0.05", "--delta", "0.2", "--delta-mode", "absolute", "--no-cache",
                     "--out", str(out), "--plot", str(plot)])
    assert code == EXIT_OK
    return printed.getvalue(), Report.model_validate(json.loads(out.read_text())), plot


def test_success_writes_report_and_plot(run: tuple[str, Report, Path]) -> None:
    text, report, plot = run
    assert "WARNING  the weights were random" in text
    assert [r.delta for r in report.recommendations] == [0.05, 0.2]
    assert report.config.delta_mode == "absolute" and report.config.fractions == [0.0005, 0.1, 0.5, 1.0]
    assert plot.read_text().lstrip().startswith("<?xml")


def test_table_has_plain_headers_a_legend_and_skipped_fractions_in_place(run: tuple[str, Report, Path]) -> None:
    text, report, _ = run
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["fraction", "neurons", "seeds"])
    assert "CKA layer" in lines[header] and "CKA pair" in lines[header] and "95% CI" in lines[header]
    rows = lines[header + 1 : header + 5]
    assert [r.split()[0] for r in rows] == ["0.0005", "0.1", "0.5", "1"], rows  # fraction order
    assert "skipped: k = round(0.0005 × 512) = 0 neurons" in rows[0]
    legend = lines[header + 5 : header + 10]
    for term in ("neurons", "accuracy", "95% CI", "CKA layer", "CKA pair"):
        assert any(line.strip().startswith(term) for line in legend), term
    assert "d = 512" in legend[0]
    assert any(line.strip().startswith("f*") and "DR = 1 − f*" in line for line in lines)
    assert any(line.strip().startswith("Gini") for line in lines)


def test_pca_cap_is_explained_in_one_line(run: tuple[str, Report, Path]) -> None:
    text, report, _ = run
    top = max(b.k for b in report.baselines if b.kind == "pca")
    assert top < report.model.d
    n = report.dataset.sizes["train"]
    (line,) = [line for line in text.splitlines() if "PCA stops at" in line]
    assert f"k = {top}" in line and f"min({n - 1}, {report.model.d})" in line


def test_what_to_do_when_a_recommendation_fails_its_checks(run: tuple[str, Report, Path]) -> None:
    _, report, _ = run
    rec = report.recommendations[0].model_copy(update={"met_below_full": True, "criterion": "mean"})
    holds = rec.model_copy(update={"holds_worst_seed": True, "holds_ci_lower": True})
    assert what_to_do(holds, report) is None
    seed_fails = what_to_do(rec.model_copy(update={"holds_worst_seed": False, "holds_ci_lower": True}), report)
    assert seed_fails and "--criterion worst_seed" in seed_fails and "more --seeds (now 2)" in seed_fails
    assert "--refine" in seed_fails
    ci_fails = what_to_do(rec.model_copy(update={"holds_worst_seed": True, "holds_ci_lower": False}), report)
    assert ci_fails and "--max-test" in ci_fails and "--criterion" not in ci_fails
    broken = report.model_copy(update={"recommendations": [rec.model_copy(update={"holds_worst_seed": False})]})
    assert "what to do: --criterion worst_seed" in format_report(broken)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--fractions", "0,2"], ["advisor: error [fractions]: fractions 0, 2 are outside (0, 1]"]),
        (["--fractions", "0.1,1.5"], ["advisor: error [fractions]: fraction 1.5 is outside (0, 1]"]),
        (["--delta", "1.2", "--delta", "-0.5"], ["advisor: error [deltas]: deltas 1.2, -0.5 are outside [0, 1)"]),
        (["--seeds", "0", "--probe", "lasso"],
         ["advisor: error [seeds]: --seeds 0: input should be greater than or equal to 1",
          "advisor: error [probe]: --probe lasso: input should be 'ridge' or 'logistic'"]),
        (["--fractions", "a,b"], ["advisor: error [fractions]: --fractions a: input should be a valid number"]),
        (["--baselines", "pca,umap"], ["advisor: error [baselines]: --baselines umap: input should be 'pca'"]),
        (["--seeds"], ["advisor: error [seeds]: --seeds: expected one argument"]),
        (["--bogus", "3"], ["advisor: error [--bogus]: unknown arguments --bogus 3"]),
        (["--plot", "curve.pdf"], ["advisor: error [plot]: 'curve.pdf' must end in .png or .svg"]),
        (["--dataset", "mnist"], ["advisor: error [dataset.spec]: unknown dataset 'mnist'"]),
        (["--model", "resnet181"], ["advisor: error [model.name]: unknown timm model 'resnet181'"]),
        (["--weights", "/nope/ckpt.safetensors"], ["advisor: error [model.weights]: checkpoint file not found"]),
        (["--weights", "bundled"], ["advisor: error [model.weights]: bundled weights exist only for"]),
    ],
)
def test_bad_input_is_one_line_per_field_and_exit_2(
    args: list[str], expected: list[str], capsys: pytest.CaptureFixture
) -> None:
    try:
        code = main([*TINY, "--no-cache", *args])
    except SystemExit as exc:  # argparse's own errors (a flag without value, an unknown flag) exit
        code = exc.code
    assert code == EXIT_BAD_INPUT == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == len(expected) and all(ERROR.fullmatch(line) for line in err), err
    for line, want in zip(err, expected, strict=True):
        assert line.startswith(want), (line, want)


def test_a_missing_required_flag_is_named(capsys: pytest.CaptureFixture) -> None:
    assert main(["analyze", "--dataset", "digits", "--seeds", "0"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.splitlines() == [
        "advisor: error [model.name]: required: give --model",
        "advisor: error [seeds]: --seeds 0: input should be greater than or equal to 1",
    ]


def test_help_shows_examples_and_exit_codes(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main(["analyze", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    examples = text.split("examples:")[1].split("exit codes:")[0]
    assert examples.count("advisor analyze --model") == 2
    codes = " ".join(text.split("exit codes:")[1].split())
    assert "0 success" in codes and "2 bad input" in codes and "advisor: error [field]: reason" in codes
    assert "130 interrupted" in codes
    for flag in ("--max-train", "--max-test"):  # once without help text
        assert re.search(rf"{flag} N\s+Class-balanced", text)


def test_the_report_and_plot_get_the_export_mode(run: tuple[str, Report, Path]) -> None:
    """Issue 18: one mode (0644 by default) for every exported file, whatever the umask."""
    import stat

    _, _, plot = run
    assert {stat.S_IMODE(p.stat().st_mode) for p in (plot, plot.parent / "r.json")} == {0o644}
