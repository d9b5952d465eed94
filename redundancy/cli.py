"""`advisor analyze`: one analysis on this machine, a readable table, optionally the JSON report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError
from tqdm import tqdm

from redundancy.config import PAPER_FRACTIONS, AnalysisConfig
from redundancy.errors import RedundancyError
from redundancy.pipeline import ProgressEvent, analyze
from redundancy.report import Report
from redundancy.runtime import Runtime


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc


def add_analyze_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="timm model name, e.g. tf_efficientnet_lite0")
    p.add_argument("--weights", default="hub", help="hub | bundled | random | PATH (.safetensors/.pth)")
    p.add_argument("--dataset", required=True, help="digits | npz:PATH | imagefolder:ROOT | cifar10 | ...")
    p.add_argument("--layer", default=None, help="named module (default: penultimate, pre-logits)")
    p.add_argument("--max-train", type=int, default=None)
    p.add_argument("--max-test", type=int, default=None)
    p.add_argument("--image-size", type=int, default=None, help="input size in pixels (default: the model's)")
    p.add_argument("--fractions", type=_floats, default=list(PAPER_FRACTIONS), help="comma-separated, in (0, 1]")
    p.add_argument("--seeds", type=int, default=5, help="random subsets per fraction")
    p.add_argument("--probe", default="ridge", choices=["ridge", "logistic"])
    p.add_argument("--delta", type=float, action="append", dest="deltas", help="tolerated loss; repeatable")
    p.add_argument("--delta-mode", default="relative", choices=["relative", "absolute"])
    p.add_argument("--criterion", default="mean", choices=["mean", "worst_seed"])
    p.add_argument("--baselines", default="pca,first_k,random_projection",
                   help="comma-separated subset of pca,first_k,random_projection; 'none' for none")
    p.add_argument("--cka", default="biased", choices=["biased", "debiased"], help="CKA estimator (test features)")
    p.add_argument("--refine", type=float, default=None, metavar="RES",
                   help="bisect f* to this resolution (fraction of d, e.g. 0.005)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the test set (0: off)")
    p.add_argument("--logistic-epochs", type=int, default=30)
    p.add_argument("--logistic-weight-decay", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--cache-dir", type=Path, default=None, help="feature cache (default ~/.cache/redundancy-advisor)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--data-root", type=Path, default=None, help="where torchvision datasets live")
    p.add_argument("--allow-download", action="store_true", help="let torchvision download datasets")
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    p.add_argument("--plot", type=Path, default=None, help="render the curves to this .png or .svg")
    add_export_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_export_argument(p: argparse.ArgumentParser) -> None:
    """A runtime-only option (not part of AnalysisConfig): where to write the deployable artifacts."""
    p.add_argument("--export", type=Path, default=None, metavar="DIR",
                   help="write one subset-head artifact (.safetensors + .json card) per δ into DIR")


def export_report(report: Report, out_dir: Path) -> None:
    """`--export DIR`: one artifact per recommendation (see redundancy.deploy)."""
    from redundancy.deploy import export_artifacts

    for path in export_artifacts(report, out_dir):
        print(f"artifact written to {path}")


def config_from_args(args: argparse.Namespace) -> AnalysisConfig:
    fields: dict[str, object] = {
        "model": {"name": args.model, "weights": args.weights},
        "dataset": {"spec": args.dataset, "max_train": args.max_train, "max_test": args.max_test},
        "layer": args.layer,
        "image_size": args.image_size,
        "fractions": args.fractions,
        "seeds": args.seeds,
        "probe": args.probe,
        "delta_mode": args.delta_mode,
        "criterion": args.criterion,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "baselines": [] if args.baselines.strip() in ("", "none") else args.baselines.split(","),
        "cka": args.cka,
        "refine_resolution": args.refine,
        "bootstrap": args.bootstrap,
        "logistic_epochs": args.logistic_epochs,
        "logistic_weight_decay": args.logistic_weight_decay,
    }
    if args.deltas:
        fields["deltas"] = args.deltas
    return AnalysisConfig.model_validate(fields)


def runtime_from_args(args: argparse.Namespace) -> Runtime:
    rt = Runtime(device=args.device, allow_download=args.allow_download)
    if args.no_cache:
        rt.cache_dir = None
    elif args.cache_dir is not None:
        rt.cache_dir = args.cache_dir
    if args.data_root is not None:
        rt.data_root = args.data_root
    return rt


class _Bars:
    """A tqdm bar per long stage, driven by the engine's progress events."""

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
        self.bar.n = int(ev.stage_progress * 1000)
        if ev.message:
            self.bar.set_postfix_str(ev.message, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def format_report(report: Report) -> str:
    m, ds = report.model, report.dataset
    lines = [
        f"model    {m.name}  weights={m.weights_source} ({m.weights_identity})  layer={m.layer} "
        f"[{m.layer_pooling}]  d={m.d}  input={'×'.join(map(str, m.input_size))}",
        f"dataset  {ds.spec}  classes={len(ds.classes)}  "
        + "  ".join(f"{k}={v}" for k, v in ds.sizes.items()),
    ]
    lines += [f"WARNING  {w}" for w in report.warnings]
    lines += ["", f"probe: {report.probe}", "",
              f"{'fraction':>9} {'k':>6} {'seeds':>5} {'accuracy':>9} {'± std':>7} {'worst':>7} "
              f"{'95% CI':>15} {'CKA':>6} {'CKA pair':>8}"]
    for s in report.summary:
        ci = f"{s.ci_low:.3f}–{s.ci_high:.3f}" if s.ci_low is not None and s.ci_high is not None else "-"
        pair = f"{s.cka_pair_mean:.3f}" if s.cka_pair_mean is not None else "-"
        mark = "  (refined)" if any(p.kind == "refinement" and p.k == s.k for p in report.curve) else ""
        lines.append(
            f"{s.fraction:>9.4g} {s.k:>6d} {s.seeds:>5d} {s.accuracy_mean:>9.4f} {s.accuracy_std:>7.4f} "
            f"{s.accuracy_min:>7.4f} {ci:>15} {s.cka_mean:>6.3f} {pair:>8}{mark}"
        )
    for sk in report.skipped_fractions:
        lines.append(f"{sk.fraction:>9g} {sk.k:>6d}   skipped: {sk.reason}")
    if report.baselines:
        kinds = list(dict.fromkeys(b.kind for b in report.baselines))
        ks = sorted({b.k for b in report.baselines})
        lines += ["", "baselines (ridge), accuracy by k:", f"{'k':>6} " + " ".join(f"{k:>17}" for k in kinds)]
        table = {(b.kind, b.k): b.accuracy_mean for b in report.baselines}
        for k in ks:
            cells = [f"{table[(kind, k)]:>17.4f}" if (kind, k) in table else f"{'-':>17}" for kind in kinds]
            lines.append(f"{k:>6d} " + " ".join(cells))
    lines += ["", f"full-layer accuracy {report.full_accuracy:.4f}", "",
              f"{'δ':>6} {'mode':>8} {'criterion':>10} {'f*':>7} {'k':>6} {'DR':>6} {'acc':>7} "
              f"{'Gini full→at':>16} {'worst class full→at':>21}  most hurt"]
    for r in report.recommendations:
        f = r.fairness
        hurt = ", ".join(f"{c.cls} ({c.change:+.3f})" for c in f.most_hurt_classes) or "-"
        lines.append(
            f"{r.delta:>6g} {r.mode:>8} {r.criterion:>10} {r.fraction:>7g} {r.k:>6d} {r.dr:>6.3f} "
            f"{r.accuracy:>7.4f} {f.gini_full:>7.4f}→{f.gini_at:<7.4f} "
            f"{f.worst_class_full:>10.4f}→{f.worst_class_at:<10.4f}  {hurt}"
        )
        if not r.met_below_full:
            lines.append(f"       {r.note}")
        else:
            robust = [f"worst seed {'holds' if r.holds_worst_seed else 'FAILS'} ({r.worst_seed_accuracy:.4f})"]
            if r.holds_ci_lower is not None:
                robust.append(f"CI lower bound {'holds' if r.holds_ci_lower else 'FAILS'} ({r.ci_low:.4f})")
            lines.append(f"       threshold {r.threshold:.4f}: " + "; ".join(robust))
        if r.savings is not None:
            sv = r.savings
            lines.append(
                f"       saves {sv.saved_fraction:.1%}: {sv.embedding_bytes_float32_full / 1e9:.2f} → "
                f"{sv.embedding_bytes_float32_kept / 1e9:.2f} GB per million float32 vectors "
                f"({sv.embedding_bytes_float16_kept / 1e9:.2f} GB float16); head {sv.head_params_full:,} → "
                f"{sv.head_params_kept:,} parameters"
            )
    lines += ["", "timings  " + "  ".join(f"{k}={v:.2f}s" for k, v in report.timings.items())
              + f"  device={report.environment.device}"
              + ("  (features from cache)" if report.environment.feature_cache_hit else "")]
    return "\n".join(lines)


def _print_error(exc: RedundancyError) -> None:
    field = f" [{exc.field}]" if exc.field else ""
    print(f"advisor: error{field}: {exc.message}", file=sys.stderr)


def run_analyze(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "config"
        print(f"advisor: error: {where}: {err['msg']}", file=sys.stderr)
        return 2
    bars = _Bars(enabled=not args.quiet)
    try:
        report = analyze(config, runtime_from_args(args), progress=bars)
    except RedundancyError as exc:
        bars.close()
        _print_error(exc)
        return 1
    except KeyboardInterrupt:
        bars.close()
        print("advisor: interrupted", file=sys.stderr)
        return 130
    bars.close()
    print(format_report(report))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report.model_dump_json(indent=2, by_alias=True))
        print(f"\nreport written to {args.out}")
    if args.plot is not None:
        from redundancy.plots import render

        fmt = "svg" if args.plot.suffix.lower() == ".svg" else "png"
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        args.plot.write_bytes(render(report, fmt))  # type: ignore[arg-type]
        print(f"plot written to {args.plot}")
    if args.export is not None:
        try:
            export_report(report, args.export)
        except RedundancyError as exc:
            _print_error(exc)
            return 1
    return 0
