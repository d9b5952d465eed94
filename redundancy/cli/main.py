"""`advisor analyze`: one analysis on this machine, a readable table, optionally the JSON report.

The analysis flags are generated from `AnalysisConfig` (`cli_options`); the rest say where the engine
runs and where the output goes. Bad input of any kind (a flag's value, the model, weights, dataset or
layer) is one line per bad field, `advisor: error [field]: reason`, and exit code 2.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from pydantic import ValidationError
from tqdm import tqdm

from redundancy.cli.options import (
    add_config_options,
    config_from_namespace,
    error_line,
    field_of_flag,
    fields_from_namespace,
    validation_errors,
)
from redundancy.cli.table import format_report
from redundancy.config import AnalysisConfig
from redundancy.errors import RedundancyError
from redundancy.filemodes import set_export_mode
from redundancy.progress import ProgressEvent
from redundancy.report import Report
from redundancy.runtime import Runtime
from redundancy.threads import available_cpus, cap_threads, thread_share

if TYPE_CHECKING:
    from redundancy.pipeline import Analysis

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
PLOT_FORMATS = (".png", ".svg")

DESCRIPTION = """\
Extract a layer's features once, probe random subsets of its neurons at many fractions and seeds,
and print the smallest fraction whose accuracy stays within δ of the full layer, with its fairness cost."""

EPILOG = f"""\
examples:
  # the bundled offline ImageNet weights on scikit-learn's digits (minutes on 2 CPU cores)
  advisor analyze --model tf_efficientnet_lite0 --weights bundled --dataset digits \\
      --delta 0.01 --delta 0.05 --delta-mode absolute --out report.json --plot curve.png
  # a plumbing check in seconds: random weights, small images, a few fractions
  advisor analyze --model resnet18 --weights random --dataset digits --max-train 200 --max-test 100 \\
      --image-size 32 --fractions 0.1,0.5 --seeds 2 --bootstrap 100

exit codes:
  {EXIT_OK}    success
  {EXIT_FAILED}    the analysis failed for a reason other than its input (the message says why)
  {EXIT_BAD_INPUT}    bad input: a flag's value, the model, weights, dataset or layer; one line per bad
       field, naming every bad value: advisor: error [field]: reason
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)"""


def _bad_input(field: str, reason: str) -> NoReturn:
    print(error_line(field, reason), file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def _uniform_errors(parser: argparse.ArgumentParser) -> None:
    """Make argparse's own errors (a flag without its value, an unknown flag) use the one format.

    The analyze parser is created by `service/cli.py`, so these are set on the instance: `error` is
    argparse's documented hook, and unknown flags are reported here rather than by the top parser."""
    pattern = re.compile(r"argument ([^:]+): (.*)")

    def error(message: str) -> NoReturn:
        m = pattern.fullmatch(message)
        if m:
            flag = m.group(1).split("/")[-1]
            _bad_input(field_of_flag(flag), f"{flag}: {m.group(2)}")
        _bad_input("arguments", message)

    original = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):  # type: ignore[no-untyped-def]
        ns, extra = original(args, namespace)
        if extra:
            _bad_input(extra[0], f"unknown argument{'s' if len(extra) > 1 else ''} {' '.join(extra)}; "
                       "see advisor analyze --help")
        return ns, extra

    parser.error = error  # type: ignore[method-assign]
    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


def add_analyze_arguments(p: argparse.ArgumentParser) -> None:
    """The analysis flags (from `AnalysisConfig`), the runtime and output flags, help and errors."""
    p.description, p.epilog = DESCRIPTION, EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    add_config_options(p.add_argument_group("analysis (each flag is a field of AnalysisConfig)"))
    rt = Runtime()
    g = p.add_argument_group("where it runs and what it writes")
    g.add_argument("--device", default=rt.device, help=f"auto | cpu | cuda | cuda:N (default: {rt.device})")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help=f"torch and BLAS threads (default: the cores this process may use, {available_cpus()})")
    g.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                   help=f"feature cache (default: {rt.cache_dir})")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache (default: off)")
    g.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                   help=f"where torchvision datasets live (default: {rt.data_root})")
    g.add_argument("--allow-download", action="store_true",
                   help="let torchvision download datasets (default: off)")
    g.add_argument("-o", "--out", type=Path, default=None, metavar="FILE",
                   help="write the JSON report here (default: none)")
    g.add_argument("--plot", type=Path, default=None, metavar="FILE",
                   help="render the curves to this .png or .svg (default: none)")
    add_export_argument(g)
    g.add_argument("--quiet", action="store_true", help="no progress bars (default: off)")
    _uniform_errors(p)


def add_export_argument(p: argparse.ArgumentParser) -> None:
    """A runtime-only option (not part of AnalysisConfig): where to write the deployable artifacts."""
    p.add_argument("--export", type=Path, default=None, metavar="DIR",
                   help="write one subset-head artifact (.safetensors + .json card) per δ into DIR")


def export_report(analysis: Analysis, out_dir: Path) -> None:
    """`--export DIR`: one artifact per recommendation (see redundancy.deploy)."""
    from redundancy.deploy import export_artifacts  # lazy: safetensors and the heads only when --export is given

    for path in export_artifacts(analysis.report, out_dir, analysis.stats, analysis.model_facts):
        print(f"artifact written to {path}")


def config_from_args(args: argparse.Namespace) -> AnalysisConfig:
    """The validated config (raises pydantic's `ValidationError`)."""
    return config_from_namespace(args)


def runtime_from_args(args: argparse.Namespace) -> Runtime:
    rt = Runtime(device=args.device, allow_download=args.allow_download)
    if args.no_cache:
        rt.cache_dir = None
    elif args.cache_dir is not None:
        rt.cache_dir = args.cache_dir
    if args.data_root is not None:
        rt.data_root = args.data_root
    return rt


def output_errors(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Bad output paths, found before minutes of work rather than after."""
    out = []
    if args.plot is not None and args.plot.suffix.lower() not in PLOT_FORMATS:
        out.append(("plot", f"{str(args.plot)!r} must end in {' or '.join(PLOT_FORMATS)}"))
    for name in ("out", "plot"):
        path: Path | None = getattr(args, name)
        if path is not None and path.is_dir():
            out.append((name, f"{str(path)!r} is a directory, not a file"))
    return out


class _Bars:
    """A tqdm bar per long stage, driven by the engine's progress events; extraction counts images
    ("images done/total, ETA"), the probes per mille."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.stage = ""

    def __call__(self, ev: ProgressEvent) -> None:
        if not self.enabled or ev.stage not in ("extract", "probe"):
            return
        if ev.stage != self.stage:
            self.close()
            self.stage = ev.stage
            self.bar = tqdm(total=1000, desc=ev.stage, unit="‰", file=sys.stderr, leave=True,
                            bar_format="{desc:8} {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")
        assert self.bar is not None
        if ev.images_done is not None and ev.images_total:
            if self.bar.total != ev.images_total:  # from the first image event on: count images
                self.bar.reset(total=ev.images_total)
                self.bar.unit = "img"
                self.bar.bar_format = ("{desc:8} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} images, "
                                       "ETA {remaining}, {rate_fmt} {postfix}")
            self.bar.n = ev.images_done
        else:
            self.bar.n = int(ev.stage_progress * (self.bar.total or 1000))
        if ev.message:
            self.bar.set_postfix_str(ev.message, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _print_errors(errors: list[tuple[str, str]]) -> None:
    for field, reason in errors:
        print(error_line(field, reason), file=sys.stderr)


def _write_outputs(report: Report, args: argparse.Namespace) -> None:
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report.model_dump_json(indent=2, by_alias=True))
        set_export_mode(args.out)
        print(f"\nreport written to {args.out}")
    if args.plot is not None:
        from redundancy.plots import render  # lazy: matplotlib only when a plot is asked for

        args.plot.parent.mkdir(parents=True, exist_ok=True)
        args.plot.write_bytes(render(report, "svg" if args.plot.suffix.lower() == ".svg" else "png"))
        set_export_mode(args.plot)
        print(f"plot written to {args.plot}")


def run_analyze(args: argparse.Namespace) -> int:
    """Validate everything, run the analysis, print the table; the exit code (see `EPILOG`)."""
    raw = fields_from_namespace(args)
    try:
        config = AnalysisConfig.model_validate(raw)
        errors = []
    except ValidationError as exc:
        config, errors = None, validation_errors(exc)
    from redundancy.preflight import merge, request_problems  # lazy: timm's model list, only once an analysis runs

    errors = merge(errors, request_problems(raw, files=True))  # shape and meaning, every bad field at once
    errors += output_errors(args)
    if errors or config is None:
        _print_errors(errors)
        return EXIT_BAD_INPUT
    cap_threads(args.threads or thread_share())
    bars = _Bars(enabled=not args.quiet)
    try:
        from redundancy.pipeline import run_analysis  # lazy: torch and timm only once an analysis runs, not --help

        analysis = run_analysis(config, runtime_from_args(args), progress=bars)
        report = analysis.report
    except RedundancyError as exc:
        bars.close()
        if exc.field:  # it names what was wrong with the input
            _print_errors([(exc.field, exc.message)])
            return EXIT_BAD_INPUT
        print(f"advisor: error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        bars.close()
        print("advisor: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    bars.close()
    print(format_report(report))
    _write_outputs(report, args)
    if args.export is not None:
        try:
            export_report(analysis, args.export)
        except RedundancyError as exc:
            _print_errors([(exc.field or "export", exc.message)])
            return EXIT_FAILED
    return EXIT_OK
