"""The `advisor` command line, and the composition root of every process it starts.

* ``advisor analyze ...``   one analysis locally, no service needed (the engine's CLI).
* ``advisor serve``         the API; with no BROKER_URL it also runs an embedded worker (SQLite).
* ``advisor worker``        a Celery worker (production: with DATABASE_URL and BROKER_URL).
* ``advisor db upgrade|downgrade|current``   Alembic migrations, shipped inside the package.
* ``advisor store du|gc``    what the store and this host's caches hold; retention, cache cap, orphans.
* ``advisor demo``          start an embedded server, run the bundled demo job, print the advice.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from redundancy.cli import main as engine_cli
from service.core import logs, process
from service.core.config import Settings, get_settings
from service.startup import print_component, quiet_celery, quiet_libraries, uvicorn_log_config

log = logging.getLogger("advisor")


def _add_analyze(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`advisor analyze`: the engine's own command line (same distribution, so always present; it
    imports torch only once an analysis runs, so `advisor --help` stays fast)."""
    analyze = sub.add_parser("analyze", help="Run one analysis locally and print the advice.")
    engine_cli.add_analyze_arguments(analyze)
    analyze.set_defaults(func=engine_cli.run_analyze)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="advisor", description="Redundancy Advisor")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_analyze(sub)
    with contextlib.suppress(ImportError):  # submit/status/recommend/...: `pip install ./client`
        from advisor_client.cli import add_commands  # lazy: the client package is optional

        add_commands(sub)

    serve = sub.add_parser("serve", help="Run the HTTP API (and, embedded, a worker).")
    fields = Settings.model_fields
    serve.add_argument("--host", default=None,
                       help=f"address to listen on (default: {fields['host'].default}; env ADVISOR_HOST)")
    serve.add_argument("--port", type=int, default=None,
                       help=f"port to listen on (default: {fields['port'].default}; env ADVISOR_PORT)")
    serve.add_argument("--data-dir", default=None, help="Overrides DATA_DIR.")
    serve.add_argument(
        "--worker",
        dest="worker",
        action="store_true",
        default=None,
        help="Start a worker subprocess (default: only when BROKER_URL is unset).",
    )
    serve.add_argument("--no-worker", dest="worker", action="store_false")
    serve.add_argument(
        "--migrate",
        dest="migrate",
        action="store_true",
        default=None,
        help="Apply migrations first (default: only for SQLite).",
    )
    serve.add_argument("--no-migrate", dest="migrate", action="store_false")
    serve.add_argument("--log-level", default="info", help="default: %(default)s")
    serve.add_argument("--verbose", action="store_true", help="Also print the Alembic, Celery and Uvicorn banners.")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="Listen on a non-loopback address with no API keys (ADVISOR_API_KEYS unset): anyone who can "
        "reach the port can run jobs. Refused without this flag.",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"uvicorn worker processes (default: ADVISOR_WEB_WORKERS, else {fields['web_workers'].default}; "
        "more need Postgres: DATABASE_URL).",
    )
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="Run a Celery worker for analysis jobs.")
    worker.add_argument("--data-dir", default=None, help="Overrides DATA_DIR.")
    worker.add_argument("-Q", "--queues", default=None,
                        help="cpu, gpu or cpu,gpu: the device queues (<ADVISOR_QUEUE>.cpu|.gpu) it takes jobs from; "
                        "a gpu-queue job runs on cuda, a cpu-queue job on cpu (ADVISOR_DEVICE, when set, wins). "
                        "Default: both.")
    worker.add_argument("-P", "--pool", default="prefork", help="prefork (default; hard time limits enforced) or solo.")
    worker.add_argument("-c", "--concurrency", type=int, default=1, help="Jobs at once (default 1: one GPU).")
    worker.add_argument("-n", "--hostname", default=None)
    worker.add_argument("-l", "--loglevel", default="info")
    worker.add_argument("--quiet", action="store_true", help="No Celery start-up banner.")
    worker.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="Database migrations (Alembic).")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser("upgrade", help="Apply migrations (default: to head).")
    up.add_argument("revision", nargs="?", default="head")
    down = dbsub.add_parser("downgrade", help="Revert migrations (default: one step; `base` for all).")
    down.add_argument("revision", nargs="?", default="-1")
    cur = dbsub.add_parser("current", help="Print the database's revision.")
    for p in (up, down, cur):
        p.add_argument("--data-dir", default=None, help="Overrides DATA_DIR.")
    db.set_defaults(func=cmd_db)

    store = sub.add_parser("store", help="The store (ADVISOR_STORE_URL): report its size, or clean it.")
    store.add_argument("--data-dir", default=None, help="Overrides DATA_DIR.")
    storesub = store.add_subparsers(dest="store_command", required=True)
    storesub.add_parser("du", help="Bytes and entries per area of the store and of this host's caches.")
    storesub.add_parser("gc", help="Expire jobs past ADVISOR_RETENTION_DAYS, trim the feature cache to "
                        "ADVISOR_FEATURE_CACHE_MAX_BYTES, remove files of jobs that no longer exist.")
    store.set_defaults(func=cmd_store)

    demo = sub.add_parser("demo", help="Run the bundled demo end to end on an embedded server.")
    demo.add_argument(
        "--data-dir",
        default=None,
        help="Where the embedded server keeps its files (default: a fresh temp dir).",
    )
    demo.add_argument("--port", type=int, default=0, help="Default: a free port.")
    demo.add_argument(
        "--quick",
        action="store_true",
        help="A seconds-long job (random weights, tiny caps) instead of the real demo.",
    )
    demo.add_argument("--timeout", type=float, default=1800.0)
    demo.add_argument(
        "--keep", action="store_true", help="Leave the server running (until Ctrl-C) and print the UI URL."
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def _apply_data_dir(args: argparse.Namespace) -> None:
    if getattr(args, "data_dir", None):
        os.environ["DATA_DIR"] = os.path.abspath(args.data_dir)
        get_settings.cache_clear()


def _logging(level: str) -> None:
    logs.configure(level, get_settings().log_format)  # text, or JSON lines with job and trace ids


# ---------------------------------------------------------------------------------------------
def cmd_db(args: argparse.Namespace) -> int:
    from service.core import migrate  # lazy: Alembic and SQLAlchemy (0.4 s) only for db and serve, not --help

    _apply_data_dir(args)
    settings = get_settings()
    url = settings.db_url
    if args.db_command == "upgrade":
        migrate.upgrade(url, args.revision)
        print(f"database at {migrate.current(url) or 'base'}")
    elif args.db_command == "downgrade":
        migrate.downgrade(url, args.revision)
        print(f"database at {migrate.current(url) or 'base'}")
    else:
        print(migrate.current(url) or "base (empty)")
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    from service.core import housekeeping  # lazy: SQLAlchemy and fsspec only for this command

    _apply_data_dir(args)
    settings = get_settings()
    if args.store_command == "du":
        store = re.sub(r"//[^/@]*@", "//***@", settings.store_root)  # never print credentials in a URL
        print(json.dumps({"store": store, **housekeeping.usage(settings)}, indent=2))
    else:
        print(json.dumps(housekeeping.gc(settings), indent=2))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    _apply_data_dir(args)
    os.environ["ADVISOR_WORKER_CONCURRENCY"] = str(max(1, args.concurrency))  # each job's thread share
    get_settings.cache_clear()
    settings = get_settings()
    settings.ensure_dirs()
    parent = os.environ.get(process.PARENT_ENV)
    if parent:  # started by `advisor serve`: die with it
        process.die_with_parent(int(parent))
    if settings.embedded:  # the SQLite broker in DATA_DIR has room for one worker
        try:
            process.DataDirLock(settings.data_path, "worker").acquire(
                wait=settings.worker_lock_wait if parent else 0.0)
        except process.AlreadyRunning as exc:
            print(f"advisor worker: {exc}", file=sys.stderr)
            return 2
    os.environ.setdefault("HF_HUB_OFFLINE", settings.hf_hub_offline)
    from redundancy.threads import cap_threads  # lazy: imports torch, which only a worker needs

    cap_threads(settings.threads_per_job)  # before the pools start; prefork children cap again at start
    from workers.celery_app import app  # lazy: the app reads DATA_DIR/HF_HUB_OFFLINE set just above

    argv = [
        "worker",
        f"--pool={args.pool}",
        f"--concurrency={args.concurrency}",
        f"--queues={args.queues or settings.queue}",
        f"--loglevel={args.loglevel}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    if args.quiet:
        argv.insert(0, "--quiet")  # a global `celery` option: it comes before the command
        quiet_celery()
    app.worker_main(argv)
    return 0


class _EmbeddedWorker:
    """A `advisor worker --pool=solo` subprocess, restarted if it dies while the API runs."""

    def __init__(self, env: dict[str, str], loglevel: str, quiet: bool = False) -> None:
        self.env, self.loglevel, self.quiet = env, loglevel, quiet
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="embedded-worker", daemon=True)

    def _spawn(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "service.cli",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            f"--loglevel={'warning' if self.loglevel == 'info' else self.loglevel}",
        ]
        if self.quiet:
            cmd.append("--quiet")
        self.proc = subprocess.Popen(cmd, env=self.env | {process.PARENT_ENV: str(os.getpid())})
        log.debug("embedded worker started (pid %s)", self.proc.pid)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.wait(2.0):
            if self.proc is not None and self.proc.poll() is not None and not self._stopping.is_set():
                log.warning("embedded worker exited with %s; restarting", self.proc.returncode)
                time.sleep(1.0)
                self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGQUIT)  # cold shutdown: do not wait for a long job to finish
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (what uvicorn binds) only accepts connections from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def open_serve_refusal(host: str, has_keys: bool, insecure: bool) -> str | None:
    """Why ``advisor serve`` must not start (one line), or None. Auth is on by default: an address
    other machines can reach needs API keys, unless the operator says ``--insecure-no-auth``."""
    if has_keys or insecure or is_loopback(host):
        return None
    return (
        f"advisor serve: refusing to listen on {host} without API keys; set ADVISOR_API_KEYS, listen on "
        "127.0.0.1, or pass --insecure-no-auth to serve everyone who can reach the port"
    )


INSECURE_BANNER = (
    "!" * 78 + "\n"
    "!! advisor serve: --insecure-no-auth: NO AUTHENTICATION on {host}:{port}. Anyone who can reach\n"
    "!! this port can submit, read and delete jobs. Set ADVISOR_API_KEYS to turn auth on.\n" + "!" * 78
)


# The event loop and HTTP parser of `advisor serve`, stated rather than left to uvicorn's "auto" (which
# takes uvloop whenever it happens to be installed). Measured with `hey -z 10s -c 500` on a cached
# recommendation (2 Xeon cores): asyncio + httptools 1,260 req/s, p99 0.85 s, no timeouts; uvloop +
# httptools 1,050 req/s, p99 6.5 s and 31 requests unanswered after 10 s (uvloop starves some
# connections when the loop is saturated); asyncio + h11 1,260 req/s, 0.76 s, but 20% slower on
# /healthz.
SERVER_IO: dict[str, str] = {"loop": "asyncio", "http": "httptools"}


def serve_defaults(args: argparse.Namespace, settings: Settings) -> None:
    """`serve`'s options left out take the settings' (``ADVISOR_HOST``, ``_PORT``, ``_WEB_WORKERS``)."""
    args.host = args.host if args.host is not None else settings.host
    args.port = args.port if args.port is not None else settings.port
    args.workers = args.workers if args.workers is not None else settings.web_workers


def listen_problem(host: str, port: int) -> str | None:
    """Why ``advisor serve`` cannot listen on ``host:port`` (one line), or None: checked before anything
    starts or is printed, so a busy port is said plainly rather than as uvicorn's ``[Errno 98]``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"advisor serve: cannot listen on {host!r}: {exc.strerror or exc}"
    family, kind, proto, _name, addr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no obstacle
        try:
            probe.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (f"advisor serve: port {port} on {host} is already in use (another server, perhaps an "
                        f"advisor serve already running); stop it or choose another port with --port")
            return f"advisor serve: cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    _apply_data_dir(args)
    serve_defaults(args, get_settings())
    _logging(args.log_level)
    quiet_libraries(args.verbose)
    has_keys = bool(get_settings().api_key_hashes)
    refusal = open_serve_refusal(args.host, has_keys, args.insecure_no_auth) or listen_problem(args.host, args.port)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    if not has_keys and not is_loopback(args.host):
        print(INSECURE_BANNER.format(host=args.host, port=args.port), file=sys.stderr, flush=True)
    import uvicorn  # lazy: only `serve` needs the HTTP server

    from service.core import migrate  # lazy: Alembic and SQLAlchemy (0.4 s) only for db and serve, not --help
    from service.main import create_app  # lazy: a worker process never imports FastAPI

    settings = get_settings()
    settings.ensure_dirs()
    sqlite = settings.db_url.startswith("sqlite")
    if args.workers < 1 or (args.workers > 1 and sqlite):
        print("advisor serve: --workers must be 1 with the embedded SQLite database (one process owns "
              "the data directory); set DATABASE_URL (Postgres) for more", file=sys.stderr)
        return 2
    if sqlite:  # one server per data directory
        try:
            process.DataDirLock(settings.data_path, "serve").acquire()
        except process.AlreadyRunning as exc:
            print(f"advisor serve: {exc}", file=sys.stderr)
            return 2
    migrate_first = args.migrate if args.migrate is not None else sqlite
    if migrate_first:
        migrate.upgrade(settings.db_url)
    print_component("database", f"{settings.db_url.split('://')[0]}, schema {migrate.current(settings.db_url)}"
                    + (", migrated at start" if migrate_first else ""))
    start_worker = args.worker if args.worker is not None else settings.start_worker_with_api
    worker = None
    if start_worker:
        env = dict(os.environ)
        env["DATA_DIR"] = str(settings.data_path)
        env.setdefault("HF_HUB_OFFLINE", settings.hf_hub_offline)
        worker = _EmbeddedWorker(env, args.log_level, quiet=not args.verbose)
        worker.start()
        print_component("worker", f"embedded Celery worker, pid {worker.proc.pid if worker.proc else '?'}")
    else:
        print_component("worker", "none here: jobs wait for `advisor worker` on the broker")
    mode = "embedded (SQLite + local worker)" if settings.embedded else "production"
    print_component("data", f"{settings.data_path}; {mode}")
    print_component("api", f"http://{args.host}:{args.port} (web UI /ui/, API docs /docs)")
    from service.http_limits import LimitedHttpToolsProtocol  # lazy: uvicorn only for serve

    io: dict[str, object] = {**SERVER_IO, "http": LimitedHttpToolsProtocol}  # heads capped: 431
    try:
        log_config = uvicorn_log_config(args.log_level, args.verbose, json_lines=settings.log_format == "json")
        if args.workers > 1:  # each process builds its app from the environment (service.main:app)
            uvicorn.run("service.main:app", host=args.host, port=args.port, log_config=log_config, log_level=None,
                        workers=args.workers, **io)  # type: ignore[arg-type]
        else:
            app = create_app(settings, on_shutdown=worker.stop if worker is not None else None)
            uvicorn.run(app, host=args.host, port=args.port, log_config=log_config, log_level=None,
                        **io)  # type: ignore[arg-type]
    finally:
        if worker is not None:
            worker.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from service.demo import run_demo  # lazy: only `demo` needs the HTTP client

    return run_demo(data_dir=args.data_dir, port=args.port, quick=args.quick, timeout=args.timeout,
                    keep=args.keep)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
