"""Issue 18 on `advisor serve`: defaults in --help, a busy port said plainly before anything starts."""

from __future__ import annotations

import socket

import pytest

from service.cli import build_parser, listen_problem, main


def test_serve_help_shows_the_defaults_of_host_and_port(capsys: pytest.CaptureFixture, monkeypatch) -> None:
    monkeypatch.delenv("ADVISOR_HOST", raising=False)
    monkeypatch.delenv("ADVISOR_PORT", raising=False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 127.0.0.1; env ADVISOR_HOST)" in out and "(default: 8000; env ADVISOR_PORT)" in out


def test_serve_on_a_busy_port_says_so_and_prints_no_url(capsys: pytest.CaptureFixture, tmp_path) -> None:
    """Before: it printed its URL, then uvicorn's raw `[Errno 98] error while attempting to bind`."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["serve", "--port", str(port), "--data-dir", str(tmp_path / "data"), "--no-worker"])
        out = capsys.readouterr()
    assert code != 0
    assert f"port {port} on 127.0.0.1 is already in use" in out.err and "--port" in out.err
    assert "Errno" not in out.err + out.out and "http://" not in out.err + out.out


def test_a_free_port_has_no_problem() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert listen_problem("127.0.0.1", port) is None
    assert listen_problem("no-such-host.invalid", port) is not None
