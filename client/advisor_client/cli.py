"""Shell commands on a running server, for pipelines: submit, status, recommend, result, plot,
cancel, upload, jobs. `add_commands(subparsers)` adds them to any argparse CLI (the `advisor` command does);
`advisor-client` / `python -m advisor_client` runs them alone.

Every command takes `--server` (default `$ADVISOR_URL`, else http://127.0.0.1:8000) and `--api-key`
(default `$ADVISOR_API_KEY`). With `--json`, stdout gets exactly one JSON document, whatever
happens (on an error: `{"error": {...}}`); progress and messages go to stderr.

One vocabulary across the commands (and `advisor analyze`): `--delta`, `--delta-mode`, `--criterion`;
an output file is positional or `-o`; a job id may be its first 6 or more characters. Bad input is
one line per bad field, `advisor: error [field]: reason`, and exit code 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from advisor_client.client import Advisor, Job, job_body
from advisor_client.errors import (
    AdvisorError,
    ApiError,
    JobCancelled,
    JobIdNotResolved,
    JobNotSucceeded,
    RateLimited,
    ServerError,
    ServerUnreachable,
    WaitTimeout,
)
from advisor_client.models import DEFAULT_SEED, DEFAULT_SEEDS, JobInfo, Recommendation
from advisor_client.progress import eta_text

EXIT_OK, EXIT_JOB, EXIT_INPUT, EXIT_TIMEOUT, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
EXIT_CODES_HELP = """exit codes:
  0  succeeded (or, without --wait, submitted)
  1  the job failed or was cancelled
  2  bad input: invalid arguments or job body, unknown job id, no result yet (the server's 4xx)
  3  timed out: --timeout passed before the job finished (the job goes on unless --cancel-on-timeout)
  4  server unreachable: no answer, or 429/5xx after the retries

With --json, stdout holds exactly one JSON document: {"job": ..., "recommendations": [...]} (plus
"error" when the job did not succeed), or {"error": {...}} when there is no job; progress goes to stderr.
"""

Command = Callable[[argparse.Namespace, Advisor], int]


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [] if text.strip().lower() == "none" else [x.strip() for x in text.split(",") if x.strip()]


def _layers(text: str) -> list[str] | str:
    """`--layers sweep` is the default sweep; otherwise comma-separated layer names."""
    return "sweep" if text.strip().lower() == "sweep" else [x.strip() for x in text.split(",") if x.strip()]


def _setting(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--server", default=None, help="server URL (default: $ADVISOR_URL, else http://127.0.0.1:8000)")
    p.add_argument("--api-key", default=None, help="API key (default: $ADVISOR_API_KEY)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON document on stdout")
    return p


def _wait_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true", help="wait until the job ends (progress on stderr)")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="with --wait: give up after S seconds")
    p.add_argument("--cancel-on-timeout", action="store_true", help="with --timeout: cancel the job when it passes")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def add_commands(sub: Any) -> None:
    """Add the client commands to an argparse subparsers object."""
    common = _common()
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("submit", parents=[common], formatter_class=fmt, epilog=EXIT_CODES_HELP,
                       help="Submit a job to the server (and wait for it with --wait).",
                       description="Submit an analysis job to a Redundancy Advisor server. Unset options take "
                       "the server's defaults. Without --wait, prints the job id (or the job with --json).")
    p.add_argument("--model", help="timm model name, e.g. tf_efficientnet_lite0")
    p.add_argument("--weights", help="hub | bundled | random | a checkpoint path on the server")
    p.add_argument("--dataset", help="digits | npz:PATH | imagefolder:ROOT | cifar10 | ...")
    p.add_argument("--max-train", type=int)
    p.add_argument("--max-test", type=int)
    p.add_argument("--layer")
    p.add_argument("--layers", type=_layers, help="the layer sweep: comma-separated layer names, or sweep (every "
                   "stage plus pre_logits); the answer is the (layer, k) with the fewest kept neurons")
    p.add_argument("--image-size", type=int)
    p.add_argument("--fractions", type=_floats, help="comma-separated, in (0, 1]")
    p.add_argument("--seeds", type=int)
    p.add_argument("--probe", choices=["ridge", "logistic"])
    p.add_argument("--delta", type=float, action="append", dest="deltas", help="tolerated loss; repeatable")
    p.add_argument("--delta-mode", choices=["relative", "absolute"])
    p.add_argument("--criterion", choices=["mean", "worst_seed"])
    p.add_argument("--baselines", type=_names, help="comma-separated: pca,first_k,random_projection, or none")
    p.add_argument("--cka", choices=["biased", "debiased"])
    p.add_argument("--refine", type=float, dest="refine_resolution", metavar="RES")
    p.add_argument("--bootstrap", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--set", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                   help="any other job field (VALUE read as JSON when it parses); repeatable")
    p.add_argument("--mlflow", metavar="URI", help="log the job to this MLflow tracking URI when it succeeds "
                   "(the server logs it; it needs the server's extra mlflow)")
    p.add_argument("--mlflow-experiment", metavar="NAME", help="with --mlflow: the MLflow experiment")
    p.add_argument("--body", type=Path, metavar="FILE", help="a JSON job body; the options above override it")
    p.add_argument("--idempotency-key", help="default: a fresh key (reused on retries)")
    _wait_args(p)
    p.set_defaults(func=_runner(cmd_submit))

    p = sub.add_parser("status", parents=[common], formatter_class=fmt, epilog=EXIT_CODES_HELP,
                       help="Show a job (and wait for it with --wait).")
    _id_arg(p)
    _wait_args(p)
    p.set_defaults(func=_runner(cmd_status))

    p = sub.add_parser("recommend", parents=[common], help="The minimal fraction within δ and its fairness cost.")
    _id_arg(p)
    p.add_argument("--delta", type=float, help="default: the job's first δ")
    p.add_argument("--delta-mode", "--mode", dest="mode", choices=["relative", "absolute"],
                   help="default: the job's delta_mode")
    p.add_argument("--criterion", choices=["mean", "worst_seed"], help="default: the job's criterion")
    p.add_argument("--max-dims", type=int, help="budget: the best score each method reaches in this many dims")
    p.add_argument("--max-bytes", type=int, help="budget: bytes per stored vector at --dtype")
    p.add_argument("--dtype", choices=["float32", "float16", "int8"], help="storage dtype for --max-bytes")
    p.add_argument("--max-worst-class-drop", type=float, help="fairness limit: worst-class loss (absolute)")
    p.add_argument("--max-gini-increase", type=float, help="fairness limit: Gini rise (absolute)")
    p.add_argument("--layer", help="a layer sweep: answer for this swept layer alone (default: across its layers)")
    p.set_defaults(func=_runner(cmd_recommend))

    p = sub.add_parser("export", parents=[common], help="Log a finished job to MLflow (extra: mlflow).")
    p.add_argument("job_id", metavar="ID")
    p.add_argument("--mlflow", required=True, metavar="URI", help="MLflow tracking URI (file:…, sqlite:…, http…)")
    p.add_argument("--experiment", default="redundancy-advisor", help="MLflow experiment name")
    p.set_defaults(func=_runner(cmd_export))

    p = sub.add_parser("result", parents=[common], help="The job's full report (JSON).")
    _id_arg(p)
    _output_args(p, "report.json (default: stdout)")
    p.set_defaults(func=_runner(cmd_result))

    p = sub.add_parser("plot", parents=[common], help="Save the job's plot (.png or .svg).")
    _id_arg(p)
    _output_args(p, "curve.png or curve.svg (required)")
    p.add_argument("--delta", type=float, action="append", dest="deltas", help="mark f* for this δ; repeatable")
    p.set_defaults(func=_runner(cmd_plot))

    p = sub.add_parser("cancel", parents=[common], help="Cancel a queued or running job.")
    _id_arg(p)
    p.set_defaults(func=_runner(cmd_cancel))

    p = sub.add_parser("upload", parents=[common], help="Upload a file of embeddings; prints its id.",
                       description="Upload a .npz, .parquet or .safetensors file of embeddings to the server "
                       "(docs/embeddings.md). Prints the upload's id (the upload with --json); a job names it "
                       "as --dataset upload:ID.")
    p.add_argument("file", type=Path, metavar="FILE")
    p.set_defaults(func=_runner(cmd_upload))

    p = sub.add_parser("jobs", parents=[common], help="List jobs, newest first: a table (or --json).",
                       description="List your jobs, newest first: id, model, dataset, status, age, the answer "
                       "at the job's first δ (the fraction of neurons to keep) and a seed that is not the "
                       "default. --json prints the jobs as the server gives them.")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    p.add_argument("--model")
    p.add_argument("--dataset")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20; 0: all)")
    p.set_defaults(func=_runner(cmd_jobs))


def _id_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("job_id", metavar="ID", help="the job's id, or its first 6 or more characters")


def _output_args(p: argparse.ArgumentParser, what: str) -> None:
    """An output file, positional or `-o` (both accepted; giving two different ones is an error)."""
    p.add_argument("output_pos", nargs="?", default=None, metavar="FILE", help=what)
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="the same, as an option")


def output_of(args: argparse.Namespace, default: str | None = None) -> str:
    """The output file given positionally or with -o."""
    given = {x for x in (args.output_pos, args.output) if x is not None}
    if len(given) > 1:
        raise BadInput([("output", f"two output files given ({', '.join(sorted(given))}); give one")])
    if not given:
        if default is None:
            raise BadInput([("output", "give the file to write: positional FILE or -o FILE")])
        return default
    return given.pop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="advisor-client", description="Redundancy Advisor client commands")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


# ---- the commands ------------------------------------------------------------------------------
def cmd_submit(args: argparse.Namespace, advisor: Advisor) -> int:
    body = submit_body(args)
    job = advisor.submit(body.pop("model"), body.pop("dataset"), idempotency_key=args.idempotency_key, **body)
    _say(f"advisor: submitted job {job.id} ({advisor.url}/v1/jobs/{job.id})")
    if not args.wait:
        if args.json:
            _emit({"job": _info(job.info)})
        else:
            print(job.id)
        return EXIT_OK
    return _wait_and_report(args, job)


def cmd_status(args: argparse.Namespace, advisor: Advisor) -> int:
    job = advisor.job(args.job_id)
    if args.wait:
        return _wait_and_report(args, job)
    if args.json:
        _emit({"job": _info(job.info)})
    else:
        print(format_job(job.info))
    return EXIT_OK


def cmd_recommend(args: argparse.Namespace, advisor: Advisor) -> int:
    rec = advisor.job(args.job_id).recommendation(
        args.delta, args.mode, args.criterion, max_dims=args.max_dims, max_bytes=args.max_bytes, dtype=args.dtype,
        max_worst_class_drop=args.max_worst_class_drop, max_gini_increase=args.max_gini_increase, layer=args.layer)
    if args.json:
        _emit(_rec(rec))
    else:
        print(format_recommendation(rec))
    return EXIT_OK


def cmd_export(args: argparse.Namespace, advisor: Advisor) -> int:
    try:
        from advisor_client.mlflow_export import export_to_mlflow  # lazy: needs the optional extra mlflow
        run_id = export_to_mlflow(advisor, args.job_id, args.mlflow, args.experiment)
    except ModuleNotFoundError as exc:
        print(f"advisor export needs MLflow: pip install './client[mlflow]' ({exc})", file=sys.stderr)
        return 2
    if args.json:
        _emit({"job": args.job_id, "mlflow_run_id": run_id, "tracking_uri": args.mlflow})
    else:
        print(f"job {args.job_id} logged to {args.mlflow}: MLflow run {run_id}")
    return EXIT_OK


def cmd_result(args: argparse.Namespace, advisor: Advisor) -> int:
    output = output_of(args, "-")
    report = advisor.job(args.job_id).report()
    text = json.dumps(report, indent=2)
    if output == "-":
        print(text)
    else:
        Path(output).write_text(text + "\n")
        _say(f"advisor: wrote {output}")
        if args.json:
            _emit({"output": str(output)})
    return EXIT_OK


def cmd_plot(args: argparse.Namespace, advisor: Advisor) -> int:
    out = advisor.job(args.job_id).plot(output_of(args), deltas=args.deltas)
    _say(f"advisor: wrote {out}")
    if args.json:
        _emit({"output": str(out)})
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, advisor: Advisor) -> int:
    info = advisor.job(args.job_id).cancel()
    if args.json:
        _emit({"job": _info(info)})
    else:
        print(format_job(info))
    return EXIT_OK


def cmd_upload(args: argparse.Namespace, advisor: Advisor) -> int:
    if not args.file.is_file():
        raise BadInput(f"{args.file}: no such file")
    info = advisor.upload(args.file)
    _say(f"advisor: uploaded {args.file} ({info.size_bytes} bytes); submit with --dataset {info.spec}")
    if args.json:
        _emit({"dataset": info.model_dump(mode="json")})
    else:
        print(info.id)
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace, advisor: Advisor) -> int:
    page_size = min(args.limit, 200) if args.limit > 0 else 200
    found: list[JobInfo] = []
    for job in advisor.jobs(args.status, model=args.model, dataset=args.dataset, page_size=page_size):
        found.append(job.info)
        if args.limit > 0 and len(found) >= args.limit:
            break
    if args.json:
        _emit({"jobs": [_info(i) for i in found]})
    else:
        answers = {i.id: _first_answer(advisor, i) for i in found}
        print(format_jobs(found, answers, dt.datetime.now(dt.UTC)))
    return EXIT_OK


def _first_answer(advisor: Advisor, info: JobInfo) -> Recommendation | None:
    """The recommendation at the job's first δ, for a succeeded job (None otherwise or when unavailable)."""
    if info.status != "succeeded":
        return None
    try:
        return Job(advisor, info).recommendation()
    except ApiError:
        return None


# ---- helpers ------------------------------------------------------------------------------------
def submit_body(args: argparse.Namespace) -> dict[str, Any]:
    """The job body from --body, then --set, then the named options (each overriding the one before)."""
    body: dict[str, Any] = {}
    if args.body is not None:
        try:
            loaded = json.loads(args.body.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BadInput([("body", f"--body {args.body}: {exc}")]) from exc
        if not isinstance(loaded, dict):
            raise BadInput([("body", f"--body {args.body}: expected a JSON object")])
        body.update(loaded)
    body.update(dict(args.set))
    model = dict(body.get("model") or {})
    dataset = dict(body.get("dataset") or {})
    for key, value in (("name", args.model), ("weights", args.weights)):
        if value is not None:
            model[key] = value
    for key, value in (("spec", args.dataset), ("max_train", args.max_train), ("max_test", args.max_test)):
        if value is not None:
            dataset[key] = value
    missing = [(field, f"required: give {flag} (or {field} in --body)")
               for field, flag, there in (("model.name", "--model", "name" in model),
                                          ("dataset.spec", "--dataset", "spec" in dataset)) if not there]
    if missing:
        raise BadInput(missing)
    named = ("layer", "layers", "image_size", "fractions", "seeds", "probe", "deltas", "delta_mode", "criterion",
             "baselines", "cka", "refine_resolution", "bootstrap", "seed")
    options = {k: v for k, v in body.items() if k not in ("model", "dataset")}
    options.update({k: getattr(args, k) for k in named if getattr(args, k) is not None})
    mlflow = dict(options.get("mlflow") or {})
    if args.mlflow is not None:
        mlflow["tracking_uri"] = args.mlflow
    if args.mlflow_experiment is not None:
        if "tracking_uri" not in mlflow:
            raise BadInput([("mlflow.tracking_uri", "--mlflow-experiment needs --mlflow URI")])
        mlflow["experiment"] = args.mlflow_experiment
    if mlflow:
        options["mlflow"] = mlflow
    return job_body(model, dataset, **options)


def _wait_and_report(args: argparse.Namespace, job: Job) -> int:
    try:
        job.wait(timeout=args.timeout, progress=not args.quiet, check=False)
    except WaitTimeout as exc:
        if args.cancel_on_timeout:
            job.cancel()
            _say(f"advisor: cancelled job {job.id}")
        return _fail(args, EXIT_TIMEOUT, "timeout", str(exc), job=job.info)
    if job.status != "succeeded":
        try:
            job.raise_for_status()
        except JobNotSucceeded as exc:
            kind = "job_cancelled" if isinstance(exc, JobCancelled) else "job_failed"
            return _fail(args, EXIT_JOB, kind, str(exc), job=job.info)
    recs = job.recommendations()
    if args.json:
        _emit({"job": _info(job.info), "recommendations": [_rec(r) for r in recs]})
    else:
        print(f"job {job.id} succeeded")
        for rec in recs:
            print(format_recommendation(rec))
    return EXIT_OK


class BadInput(AdvisorError):
    """A client-side input error (exit 2): ``(field, reason)`` per bad field."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"[{f}] {r}" for f, r in problems))


def _runner(command: Command) -> Callable[[argparse.Namespace], int]:
    """Run a command with an `Advisor` and map every failure to its exit code and one stderr line."""

    def run(args: argparse.Namespace) -> int:
        try:
            with Advisor(args.server, args.api_key) as advisor:
                return command(args, advisor)
        except ServerUnreachable as exc:
            return _fail(args, EXIT_UNREACHABLE, "unreachable", str(exc))
        except (RateLimited, ServerError) as exc:
            return _fail(args, EXIT_UNREACHABLE, "unavailable", str(exc), problem=exc.to_dict())
        except ApiError as exc:
            fields = [(e.field, e.reason) for e in exc.errors]
            return _fail(args, EXIT_INPUT, "bad_input", str(exc), problem=exc.to_dict(), fields=fields)
        except BadInput as exc:
            return _fail(args, EXIT_INPUT, "bad_input", str(exc), fields=exc.problems)
        except (JobIdNotResolved, ValueError, OSError) as exc:
            return _fail(args, EXIT_INPUT, "bad_input", str(exc))

    return run


def _fail(args: argparse.Namespace, code: int, kind: str, message: str, *, job: JobInfo | None = None,
          problem: dict[str, Any] | None = None, fields: list[tuple[str, str]] | None = None) -> int:
    """One stderr line per bad field (`advisor: error [field]: reason`, as `advisor analyze`), else one."""
    for line in [f"advisor: error [{f}]: {r}" for f, r in fields or []] or [f"advisor: error: {message}"]:
        print(line, file=sys.stderr)
    if args.json:
        doc: dict[str, Any] = {"error": {"kind": kind, "exit_code": code, "message": message, **(problem or {})}}
        if job is not None:
            doc = {"job": _info(job), "recommendations": [], **doc}
        _emit(doc)
    return code


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _emit(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    sys.stdout.flush()


def _info(info: JobInfo) -> dict[str, Any]:
    return info.model_dump(mode="json", by_alias=True, exclude_none=False)


def _rec(rec: Recommendation) -> dict[str, Any]:
    return rec.model_dump(mode="json", by_alias=True)


def format_job(info: JobInfo) -> str:
    stage = info.stage or "-"
    line = f"{info.id}  {info.status:<9}  {stage:<10}  {100 * info.progress:5.1f}%  {info.created_at:%Y-%m-%d %H:%M:%S}"
    if eta_text(info):
        line += f"  {eta_text(info)}"
    if info.error is not None:
        line += f"  {info.error.code}: {info.error.message}"
    elif info.message and not info.done:
        line += f"  {info.message}"
    if info.mlflow and info.mlflow.get("state") == "logged":
        line += f"  mlflow run {info.mlflow.get('run_id')}"
    elif info.mlflow and info.mlflow.get("state") == "failed":
        line += f"  mlflow logging failed: {info.mlflow.get('error')}"
    return line


def age(created: dt.datetime, now: dt.datetime) -> str:
    """`45s`, `12m`, `3h`, `2d`: how long ago a job was created."""
    if created.tzinfo is None:  # the server writes UTC
        created = created.replace(tzinfo=dt.UTC)
    seconds = max(0, int((now - created).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def answer_cell(rec: Recommendation | None) -> str:
    """`keep 0.3 (k 384/1280) at δ 0.01`: the fraction to keep at the job's first δ."""
    if rec is None:
        return "-"
    return f"keep {rec.fraction:.3g} (k {rec.k}/{rec.d}) at δ {rec.delta:g}"


def seed_note(request: dict[str, Any]) -> str:
    """The seed and the seeds when they are not the defaults (jobs differing only there look alike)."""
    notes = []
    if request.get("seed", DEFAULT_SEED) != DEFAULT_SEED:
        notes.append(f"seed {request['seed']}")
    if request.get("seeds", DEFAULT_SEEDS) != DEFAULT_SEEDS:
        notes.append(f"seeds {request['seeds']}")
    return ", ".join(notes)


JOB_COLUMNS = ("ID", "MODEL", "DATASET", "STATUS", "AGE", "ANSWER (first δ)", "NOTE")


def format_jobs(infos: list[JobInfo], answers: dict[str, Recommendation | None], now: dt.datetime) -> str:
    """A headed table, one job a row; the id is shortened to 8 characters (any 6 of them work)."""
    rows = [JOB_COLUMNS]
    for i in infos:
        model = str((i.request.get("model") or {}).get("name", "?"))
        dataset = str((i.request.get("dataset") or {}).get("spec", "?"))
        status = i.status if i.error is None else f"{i.status} ({i.error.code})"
        rows.append((i.id[:8], model, dataset, status, age(i.created_at, now), answer_cell(answers.get(i.id)),
                     seed_note(i.request)))
    if len(rows) == 1:
        return "no jobs"
    widths = [max(len(r[c]) for r in rows) for c in range(len(JOB_COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def format_recommendation(rec: Recommendation) -> str:
    f = rec.fairness
    return (
        f"δ = {rec.delta:g} ({rec.mode}, {rec.criterion}): keep {rec.k} of {rec.d} neurons {layer_words(rec)}"
        f"(fraction {rec.fraction:g}, DR {rec.dr:.3f}); accuracy {100 * rec.accuracy:.1f}% vs "
        f"{100 * rec.full_accuracy:.1f}% full (threshold {100 * rec.threshold:.1f}%); "
        f"Gini {f.gini_change:+.4f}, worst class {100 * f.worst_class_change:+.1f} pts\n  {rec.note}"
        + "".join(f"\n  {line}" for line in deploy_lines(rec))
    )


def layer_words(rec: Recommendation) -> str:
    """`of layer L ` (a sweep whose reference is another layer: `of layer L (δ against the full R) `), or ''."""
    if rec.layer is None:
        return ""
    other = rec.reference_layer is not None and rec.reference_layer != rec.layer
    return f"of layer {rec.layer} " + (f"(δ against the full {rec.reference_layer}) " if other else "")


def deploy_lines(rec: Recommendation) -> list[str]:
    """The verdict, each method, and the budget and fairness-limit answers when the server sent them."""
    out = [f"{m.method:<18} k = {m.k:<6} accuracy {100 * m.score:.1f}%  ({m.serving})"
           + ("" if m.met_below_full else "  [no k below d meets δ]") for m in rec.methods]
    if rec.verdict is not None:
        out.append(f"verdict: ship {rec.verdict.method} (k = {rec.verdict.k}): {rec.verdict.reason}")
        if rec.verdict.nested_note:
            out.append(rec.verdict.nested_note)
    if rec.budget:
        b = rec.budget
        out.append(f"budget (k ≤ {b['max_k']}, {b['dtype']}): best {b['best']}")
        out += [f"  {m['method']:<18} k = {m['k']}  accuracy "
                + (f"{100 * m['score']:.1f}%" if m["score"] is not None else "—")
                + (f"  int8 {100 * m['int8_score']:.1f}%" if m.get("int8_score") is not None else "")
                for m in b["methods"]]
    if rec.constrained:
        out.append(f"fairness limits: {rec.constrained['note']}")
    return out


if __name__ == "__main__":
    sys.exit(main())
