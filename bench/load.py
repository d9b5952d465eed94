"""Closed-loop HTTP load against a running server: throughput, p50/p99 and errors per endpoint, each
as a ratio to ``/healthz`` measured in the same run against the same server.

    python bench/load.py --url http://127.0.0.1:8000 --job <succeeded job id> [--key K]
    python bench/load.py --spawn            # starts an embedded server, runs a tiny job, then measures
    python bench/load.py --spawn --generator hey   # the same rows, load from `hey` (apt install hey)
    python bench/load.py --url U --key K1 --fairness K2 --clients 100   # one key floods, another reads

Each of ``--clients`` (default 100 and 500) keeps one request in flight for ``--seconds``; an answer
with a status >= 500, a transport error or no answer within ``--timeout`` counts as an error. The
endpoints: ``/healthz`` (the baseline: no database), the recommendation and the result (cached reads of
a finished job), the list of jobs (``page_size=20``) and ``POST /v1/jobs`` (a new job each time;
measured after every read, so the jobs it queues do not run under the reads).

The load generator shares the CPUs with the server. ``--generator python`` (httpx, asyncio; the default,
and what the tests use) spends about as much CPU per request as the server does; ``--generator hey``
(Go, the tool of the issue's report) much less, so its figures are closer to the server's own capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


@dataclass
class LoadResult:
    """What one endpoint got under ``clients`` concurrent clients for ``seconds``."""

    name: str
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    timeouts: int = 0
    error_samples: list[str] = field(default_factory=list)
    quantiles: dict[float, float] | None = None  # from a generator that reports quantiles, not latencies
    answered: int | None = None  # its count of answers below 500

    @property
    def ok(self) -> int:
        return self.answered if self.answered is not None else len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds

    def percentile(self, q: float) -> float:
        """The ``q``-quantile of successful latencies (nearest rank), in seconds."""
        if self.quantiles is not None:
            return self.quantiles.get(q, float("nan"))
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, max(0, int(round(q * len(xs))) - 1))]


Request = Callable[[httpx.AsyncClient, int], Any]


async def hammer(
    base_url: str,
    name: str,
    request: Request,
    *,
    clients: int,
    seconds: float,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
    qps: float | None = None,
) -> LoadResult:
    """``clients`` tasks, each sending ``await request(client, i)`` back to back until ``seconds`` are
    over (with ``qps``: at most that many a second per client). A status >= 500, a transport error or a
    timeout is an error; anything else a success."""
    out = LoadResult(name, clients, seconds)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits, headers=headers) as client:
        stop = time.monotonic() + seconds

        async def one(worker: int) -> None:
            i, next_at = 0, time.monotonic()
            while time.monotonic() < stop:
                if qps:  # paced: one request every 1/qps s
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                    next_at += 1 / qps
                start = time.monotonic()
                try:
                    r = await request(client, worker * 1_000_000 + i)
                except httpx.TimeoutException:
                    out.timeouts += 1
                    continue
                except httpx.HTTPError as exc:
                    out.errors += 1
                    if len(out.error_samples) < 5:
                        out.error_samples.append(f"{type(exc).__name__}: {exc}")
                    continue
                finally:
                    i += 1
                out.statuses[r.status_code] = out.statuses.get(r.status_code, 0) + 1
                if r.status_code >= 500:
                    out.errors += 1
                    if len(out.error_samples) < 5:
                        out.error_samples.append(f"{r.status_code}: {r.text[:200]}")
                else:
                    out.latencies.append(time.monotonic() - start)

        await asyncio.gather(*(one(w) for w in range(clients)))
    return out


def hey(base_url: str, name: str, method: str, path: str, *, clients: int, seconds: float, timeout: float,
        headers: dict[str, str] | None = None, body: dict[str, Any] | None = None,
        qps: float | None = None) -> LoadResult:
    """The same measurement by `hey -z`: its summary parsed into a LoadResult (throughput over the
    answers below 500; p50/p99 from its latency distribution, which counts every answer)."""
    cmd = ["hey", "-z", f"{seconds:g}s", "-c", str(clients), "-t", f"{max(1, round(timeout))}", "-m", method]
    if qps:
        cmd += ["-q", f"{qps:g}"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if body is not None:
        cmd += ["-T", "application/json", "-d", json.dumps(body)]
    text = subprocess.run(cmd + [base_url + path], capture_output=True, text=True,
                          timeout=seconds + timeout + 60).stdout
    return parse_hey(text, name, clients, seconds)


def parse_hey(text: str, name: str, clients: int, seconds: float) -> LoadResult:
    """A LoadResult from hey's summary: answers below 500 are successes, 5xx and transport errors
    errors, client timeouts timeouts."""
    total = re.search(r"Total:\s+([\d.]+) secs", text)
    out = LoadResult(name, clients, float(total.group(1)) if total else seconds, quantiles={}, answered=0)
    for pct, secs in re.findall(r"(\d+)% in ([\d.]+) secs", text):
        out.quantiles[int(pct) / 100] = float(secs)  # type: ignore[index]
    codes = text.split("Status code distribution:", 1)[-1].split("Error distribution:", 1)[0]
    for code, count in re.findall(r"\[(\d+)\]\s+(\d+) responses", codes):
        out.statuses[int(code)] = int(count)
        if int(code) >= 500:
            out.errors += int(count)
        else:
            out.answered += int(count)  # type: ignore[operator]
    if "Error distribution:" in text:
        for count, what in re.findall(r"\[(\d+)\]\s+(.+)", text.split("Error distribution:", 1)[1]):
            if "Timeout" in what or "deadline exceeded" in what:
                out.timeouts += int(count)
            else:
                out.errors += int(count)
                if len(out.error_samples) < 5:
                    out.error_samples.append(what[:200])
    return out


def get(path: str, **params: Any) -> Request:
    async def req(client: httpx.AsyncClient, _i: int) -> httpx.Response:
        return await client.get(path, params=params or None)

    return req


def post_job(body: dict[str, Any]) -> Request:
    async def req(client: httpx.AsyncClient, i: int) -> httpx.Response:
        return await client.post("/v1/jobs", json=body, headers={"Idempotency-Key": f"load-{os.getpid()}-{i}"})

    return req


POST = "POST /v1/jobs"


def reads(job_id: str) -> dict[str, str]:
    """The measured reads: name → path and query (the same URL for either generator)."""
    return {"healthz": "/healthz", "recommendation": f"/v1/jobs/{job_id}/recommendation?delta=0.05",
            "result": f"/v1/jobs/{job_id}/result", "list": "/v1/jobs?page_size=20"}


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout.splitlines():
            if line.startswith("Model name:"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def report(results: list[LoadResult]) -> str:
    lines = [f"{'endpoint':<16}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
             f"{'timeouts':>9}{'vs healthz':>11}"]
    base = {r.clients: r.throughput for r in results if r.name == "healthz"}
    for r in results:
        ratio = r.throughput / base[r.clients] if base.get(r.clients) else float("nan")
        lines.append(f"{r.name:<16}{r.clients:>8}{r.throughput:>9.0f}{r.percentile(0.5) * 1e3:>9.1f}"
                     f"{r.percentile(0.99) * 1e3:>9.1f}{r.errors:>8}{r.timeouts:>9}{ratio:>11.2f}")
        for sample in r.error_samples:
            lines.append(f"    {sample}")
    return "\n".join(lines)


async def measure(url: str, job_id: str, clients: list[int], seconds: float, timeout: float,
                  post_body: dict[str, Any] | None, headers: dict[str, str] | None,
                  generator: str = "python") -> list[LoadResult]:
    """Every read at every client count, then the POSTs (the jobs they queue run after the reads)."""
    paths = reads(job_id)
    plan = [(n, name) for n in clients for name in paths]
    if post_body is not None:
        plan += [(n, POST) for n in clients]
    results = []
    for n, name in plan:
        body = post_body if name == POST else None
        if generator == "hey":
            results.append(await asyncio.to_thread(
                hey, url, name, "POST" if body else "GET", paths.get(name, "/v1/jobs"), clients=n,
                seconds=seconds, timeout=timeout, headers=headers, body=body))
        else:
            req = post_job(body) if body else get(paths[name])
            results.append(await hammer(url, name, req, clients=n, seconds=seconds, timeout=timeout,
                                        headers=headers))
    results.sort(key=lambda r: (r.clients, r.name == POST))
    return results


FAIR_PATH = "/v1/jobs?page_size=1"  # a read of one's own jobs: auth, the rate limit and one query


async def fairness(url: str, reader_key: str, flood_key: str, *, clients: int, seconds: float, timeout: float,
                   generator: str = "python", reader_clients: int = 2, reader_qps: float = 10.0) -> list[LoadResult]:
    """Issue 23 probe 8: the p99 of a paced reader (``reader_clients`` × ``reader_qps`` a second, under a
    default rate limit) on :data:`FAIR_PATH` alone, then while another key floods the same path with
    ``clients`` closed-loop clients; and the flood's total answers a second (429s included). The reader is
    always this process (httpx); ``generator`` sends the flood."""

    def run(name: str, key: str, n: int, qps: float | None) -> Any:
        headers = {"X-API-Key": key}
        if generator == "hey" and qps is None:  # the paced reader is cheap, and hey drops a small run's p99
            return asyncio.to_thread(hey, url, name, "GET", FAIR_PATH, clients=n, seconds=seconds,
                                     timeout=timeout, headers=headers, qps=qps)
        return hammer(url, name, get(FAIR_PATH), clients=n, seconds=seconds, timeout=timeout, headers=headers,
                      qps=qps)

    alone = await run("reader alone", reader_key, reader_clients, reader_qps)
    under, flood = await asyncio.gather(run("reader, flooded", reader_key, reader_clients, reader_qps),
                                        run("flood", flood_key, clients, None))
    return [alone, under, flood]


def fairness_report(results: list[LoadResult]) -> str:
    """Every answer counts here (a 429 is an answer): answers a second, p50/p99 and the statuses."""
    lines = [f"{'who':<18}{'clients':>8}{'answers/s':>11}{'p50 ms':>9}{'p99 ms':>9}  statuses"]
    for r in results:
        answers = sum(n for code, n in r.statuses.items())
        lines.append(f"{r.name:<18}{r.clients:>8}{answers / r.seconds:>11.0f}{r.percentile(0.5) * 1e3:>9.1f}"
                     f"{r.percentile(0.99) * 1e3:>9.1f}  {dict(sorted(r.statuses.items()))}"
                     f"{f' errors {r.errors}' if r.errors else ''}{f' timeouts {r.timeouts}' if r.timeouts else ''}")
    return "\n".join(lines)


def _spawn_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL")}
    # capacity, not policy: the per-client rate limit would answer most of one machine's clients 429
    # and the per-key cap on active jobs would answer most POSTs 429 without writing anything
    env.update({"DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", "ADVISOR_RATE_LIMIT": "",
                "ADVISOR_MAX_ACTIVE_JOBS": "1000000"})
    log = open(data_dir.parent / "serve.log", "wb")  # noqa: SIM115 - lives as long as the server
    return subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port),
                             "--log-level", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT)


def _tiny_job(url: str) -> str:
    from service.api.schemas import SMALL_JOB_EXAMPLE  # lazy: only --spawn submits a job

    with httpx.Client(base_url=url, timeout=30) as c:
        deadline = time.monotonic() + 120
        while True:
            try:
                if c.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server did not become ready")
            time.sleep(0.3)
        job = c.post("/v1/jobs", json=SMALL_JOB_EXAMPLE).json()
        while c.get(f"/v1/jobs/{job['id']}").json()["status"] not in ("succeeded", "failed", "cancelled"):
            if time.monotonic() > deadline + 180:
                raise SystemExit("the tiny job did not finish")
            time.sleep(0.5)
        return str(job["id"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--job", help="A succeeded job's id (its recommendation and result are read).")
    p.add_argument("--spawn", action="store_true", help="Start an embedded server in a temp dir first.")
    p.add_argument("--clients", default="100,500")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--no-post", action="store_true", help="Skip POST /v1/jobs (it queues real jobs).")
    p.add_argument("--key", default=os.environ.get("ADVISOR_LOAD_KEY"))
    p.add_argument("--json", help="Also write the results here.")
    p.add_argument("--generator", choices=("python", "hey"), default="python",
                   help="Who sends the load: this process (httpx) or `hey` (must be on PATH).")
    p.add_argument("--fairness", metavar="FLOOD_KEY",
                   help=f"Instead of the rows: a paced reader (--key) on {FAIR_PATH} alone, then while this "
                        "second key floods it with the first --clients (issue 23, probe 8).")
    args = p.parse_args(argv)
    if args.fairness and (not args.key or args.spawn):
        p.error("--fairness needs --key (the reader's key) and a server with both keys (--url, not --spawn)")
    if args.generator == "hey" and shutil.which("hey") is None:
        p.error("--generator hey needs `hey` on PATH (apt-get install hey)")
    server = None
    url = args.url
    if args.spawn:
        import socket
        import tempfile

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        tmp = Path(tempfile.mkdtemp(prefix="advisor-load-"))
        server = _spawn_server(tmp / "data", port)
        url = f"http://127.0.0.1:{port}"
    if args.fairness:
        n = int(args.clients.split(",")[0])
        print(f"# {cpu_name()}; load average {os.getloadavg()[0]:.1f} at start; {args.seconds:.0f} s per row; "
              f"{url}; load from {args.generator}", flush=True)
        print(fairness_report(asyncio.run(fairness(url, args.key, args.fairness, clients=n, seconds=args.seconds,
                                                   timeout=args.timeout, generator=args.generator))))
        return 0
    try:
        job = args.job or _tiny_job(url)
        post_body = None
        if not args.no_post:
            from service.api.schemas import SMALL_JOB_EXAMPLE  # lazy: the body of the POSTs

            post_body = SMALL_JOB_EXAMPLE
        headers = {"X-API-Key": args.key} if args.key else None
        clients = [int(c) for c in args.clients.split(",")]
        print(f"# {cpu_name()}; load average {os.getloadavg()[0]:.1f} at start; {args.seconds:.0f} s per row; "
              f"{url}; load from {args.generator}", flush=True)
        results = asyncio.run(measure(url, job, clients, args.seconds, args.timeout, post_body, headers,
                                      args.generator))
        print(report(results))
        print(f"# load average {os.getloadavg()[0]:.1f} at the end (the load generator shares the CPUs)")
        if args.json:
            Path(args.json).write_text(json.dumps([
                {"name": r.name, "clients": r.clients, "rps": r.throughput, "p50": r.percentile(0.5),
                 "p99": r.percentile(0.99), "errors": r.errors, "timeouts": r.timeouts} for r in results
            ], indent=2))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
