"""Fixtures for the UI tests: a real `advisor serve` (embedded: SQLite + worker subprocess) on a free
port in a temp DATA_DIR, and headless Debian chromium driven by Selenium through chromium-driver."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)


@dataclass
class Server:
    base: str
    log: Path
    api_key: str | None
    data_dir: Path

    def client(self) -> httpx.Client:
        headers = {"X-API-Key": self.api_key} if self.api_key else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(tmp: Path, api_key: str | None = None, args: tuple[str, ...] = (),
                 extra_env: dict[str, str] | None = None) -> tuple[Server, subprocess.Popen[bytes]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BROKER_URL") and not k.startswith("ADVISOR_")}
    env.update({"DATA_DIR": str(tmp / "data"), "HF_HUB_OFFLINE": "1"})
    if api_key:
        env["ADVISOR_API_KEYS"] = api_key
    env.update(extra_env or {})
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port), *args],
                                env=env, cwd=tmp, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", log, api_key, tmp / "data")
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=server.base, timeout=5) as c:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"advisor serve exited with {proc.returncode}:\n{server.tail()}")
            try:
                if c.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                stop_server(proc)
                pytest.fail(f"advisor serve did not become ready:\n{server.tail()}")
            time.sleep(0.3)
    return server, proc


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the embedded worker, should it have outlived the server


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    procs: list[subprocess.Popen[bytes]] = []

    def _start(api_key: str | None = None, args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Server:
        server, proc = start_server(tmp_path / f"server{len(procs)}", api_key, args, env)
        procs.append(proc)
        return server

    yield _start
    for proc in procs:
        stop_server(proc)


def browser_paths() -> tuple[str, str]:
    """chromium and chromedriver, or a failure (never a skip) that says how to get them."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        missing = ", ".join(n for n, p in (("chromium", chromium), ("chromedriver", driver)) if not p)
        pytest.fail(f"{missing} not installed: the browser tests need Debian's chromium and chromium-driver; "
                    "`bash scripts/browser.sh` (run by `make test`) installs them with apt-get", pytrace=False)
    return chromium, driver


@pytest.fixture
def browser() -> Iterator[object]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        pytest.fail(f"selenium is not installed ({exc}): pip install -e '.[dev]'", pytrace=False)
    chromium, driver_path = browser_paths()
    profile = tempfile.mkdtemp(prefix="advisor-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    # Nothing but this machine resolves: a page that reached for a CDN would fail to load it.
    options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except Exception as exc:  # noqa: BLE001 - say why the browser did not start
        shutil.rmtree(profile, ignore_errors=True)
        pytest.fail(f"chromium did not start through {driver_path}: {exc}", pytrace=False)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
