"""`advisor serve` starts quietly: one line per component; the library banners only with --verbose."""

from __future__ import annotations

import time

from service.startup import component_line

COMPONENTS = ("database", "worker", "data", "api")
BANNERS = ("Running upgrade", "alembic.runtime", "Uvicorn running on", "Application startup complete", "celery@")


def _output_once_ready(serve, args: tuple[str, ...], wait_for: str) -> str:
    server = serve(args=args)
    deadline = time.monotonic() + 60  # the worker prints its banner once it has connected
    while wait_for not in server.log.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.5)
    return server.log.read_text(errors="replace")


def test_serve_prints_one_line_per_component_and_no_banner(serve):
    out = _output_once_ready(serve, (), "advisor: api")
    ours = [line for line in out.splitlines() if line.startswith("advisor: ")]
    assert [line.split()[1] for line in ours] == list(COMPONENTS), out
    assert any(line.startswith(component_line("api", "http://127.0.0.1:")) for line in ours)
    assert not [b for b in BANNERS if b in out], out


def test_serve_verbose_shows_the_banners(serve):
    out = _output_once_ready(serve, ("--verbose",), "celery@")
    assert "Running upgrade" in out and "Uvicorn running on" in out and "celery@" in out, out
    assert sum(line.startswith("advisor: ") for line in out.splitlines()) == len(COMPONENTS), out
