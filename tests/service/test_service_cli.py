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
                 ["db", "downgrade", "base"], ["db", "current"], ["demo", "--quick"], ["store", "du"],
                 ["store", "gc"]):
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
    assert {"postgres", "redis", "minio", "minio-init", "migrate", "api", "worker", "worker-gpu"} <= set(services)
    assert services["migrate"]["restart"] == "no" and services["minio-init"]["restart"] == "no"
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert "deploy" not in services["worker"]  # CPU workers: scalable, no device reservation
    assert services["worker"]["environment"]["ADVISOR_DEVICE"] == "cpu"
    for name in ("api", "worker", "worker-gpu", "migrate"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://") and env["BROKER_URL"].startswith("redis://")
        # issue 23: one store for every host, MinIO through s3fs; credentials from the AWS variables
        assert env["ADVISOR_STORE_URL"].startswith("s3://") and env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert "AWS_ACCESS_KEY_ID" in env and "AWS_SECRET_ACCESS_KEY" in env
    for name in ("api", "worker", "worker-gpu"):
        assert services[name]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    # nothing shared on disk: no named volume is mounted by two of the API and the workers
    mounts: dict[str, list[str]] = {}
    for name in ("api", "worker", "worker-gpu"):
        for v in services[name].get("volumes", []):
            if ":" in str(v):
                mounts.setdefault(str(v).split(":", 1)[0], []).append(name)
    assert all(len(users) == 1 for users in mounts.values()), mounts
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]  # --scale works
    assert "s3" in (ROOT / "Dockerfile").read_text().split("ARG EXTRAS=", 1)[1].splitlines()[0].split(",")
    assert (ROOT / "Dockerfile").is_file()


def test_compose_file_is_valid_for_docker_compose(tmp_path):
    """`docker-compose -f docker-compose.yml config -q` where a compose binary exists (offline)."""
    import os
    import shutil
    import subprocess

    for argv in (["docker-compose"], ["docker", "compose"]):
        if shutil.which(argv[0]) is None:
            continue
        probe = subprocess.run([*argv, "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode != 0:
            continue
        out = subprocess.run([*argv, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], capture_output=True,
                             text=True, timeout=60, env={**os.environ, "ADVISOR_API_KEYS": "k" * 40}, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        return
    pytest.skip("no docker-compose binary here: the YAML checks above stand in for `config -q`")


@pytest.mark.parametrize("service_name", ["migrate", "api", "worker", "worker-gpu"])
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
