"""The CLI's service commands, and the compose file only runs commands the CLI has."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from service.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def test_parser_has_every_subcommand():
    parser = build_parser()
    for argv in (["serve"], ["serve", "--no-worker", "--port", "9"], ["worker", "-Q", "gpu"], ["db", "upgrade"],
                 ["db", "downgrade", "base"], ["db", "current"], ["demo", "--quick"]):
        assert parser.parse_args(argv).func is not None


def test_db_commands_round_trip(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["db", "upgrade", "--data-dir", str(tmp_path)]) == 0
    assert (tmp_path / "advisor.sqlite").exists()
    assert main(["db", "current", "--data-dir", str(tmp_path)]) == 0
    assert "(head)" in capsys.readouterr().out
    assert main(["db", "downgrade", "base", "--data-dir", str(tmp_path)]) == 0
    assert main(["db", "current", "--data-dir", str(tmp_path)]) == 0
    assert "base" in capsys.readouterr().out.splitlines()[-1]
    from service.core.config import get_settings

    get_settings.cache_clear()


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_and_volumes():
    compose = _compose()
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "api", "worker"} <= set(services)
    assert services["migrate"]["restart"] == "no"
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert any(str(v).endswith(":/data") or ":/data " in str(v) for v in services["worker"]["volumes"])
    for name in ("api", "worker", "migrate"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://") and env["BROKER_URL"].startswith("redis://")
    assert (ROOT / "Dockerfile").is_file()


@pytest.mark.parametrize("service_name", ["migrate", "api", "worker"])
def test_every_compose_command_exists_in_the_cli(service_name):
    command = _compose()["services"][service_name]["command"]
    argv = command if isinstance(command, list) else shlex.split(command)
    assert argv[0] == "advisor"
    args = build_parser().parse_args(argv[1:])  # SystemExit (a failure) if the CLI lacks it
    assert callable(args.func)


def test_dockerfile_default_command_exists_in_the_cli():
    import json

    line = next(x for x in (ROOT / "Dockerfile").read_text().splitlines() if x.startswith("CMD "))
    argv = json.loads(line[4:])
    assert argv[0] == "advisor"
    build_parser().parse_args(argv[1:])


def test_serve_reads_host_port_and_workers_through_settings(monkeypatch):
    from service.cli import serve_defaults
    from service.core.config import Settings

    monkeypatch.setenv("ADVISOR_HOST", "0.0.0.0")
    monkeypatch.setenv("ADVISOR_PORT", "9123")
    monkeypatch.setenv("ADVISOR_WEB_WORKERS", "3")
    args = build_parser().parse_args(["serve"])
    serve_defaults(args, Settings())
    assert (args.host, args.port, args.workers) == ("0.0.0.0", 9123, 3)
    args = build_parser().parse_args(["serve", "--host", "127.0.0.2", "--port", "8001", "--workers", "1"])
    serve_defaults(args, Settings())
    assert (args.host, args.port, args.workers) == ("127.0.0.2", 8001, 1)  # the options win
    for var in ("ADVISOR_HOST", "ADVISOR_PORT", "ADVISOR_WEB_WORKERS"):
        monkeypatch.delenv(var)
    args = build_parser().parse_args(["serve"])
    serve_defaults(args, Settings())
    assert (args.host, args.port, args.workers) == ("127.0.0.1", 8000, 1)


def test_the_cli_reads_no_advisor_variable_itself():
    """Every ADVISOR_* value reaches the CLI through Settings (one place that reads the environment);
    setting one for child processes (`advisor worker -c` exports its concurrency) is not reading it."""
    import re

    source = (Path(__file__).resolve().parents[2] / "service" / "cli.py").read_text()
    reads = re.findall(r"environ\.get\([\"']ADVISOR_|environ\[[\"']ADVISOR_\w+[\"']\](?!\s*=[^=])", source)
    assert reads == []


@pytest.mark.parametrize(("allow", "want"), [(False, "1"), (True, "0")])
def test_hub_offline_default_follows_allow_download(allow, want):
    from service.core.config import Settings

    assert Settings(allow_download=allow).hf_hub_offline == want
