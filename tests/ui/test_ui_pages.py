"""The UI's page shells and the offline docs, in-process (no browser): what each URL answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.docs import DOCS_ASSETS_URL, assets_dir


class _NoQueue:
    def enqueue(self, job_id: str) -> None:
        pass


@pytest.fixture
def client(tmp_path, monkeypatch) -> TestClient:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    for var in ("DATABASE_URL", "BROKER_URL", "ADVISOR_API_KEYS"):
        monkeypatch.delenv(var, raising=False)
    from service.core.config import Settings
    from service.main import create_app

    return TestClient(create_app(Settings(), queue=_NoQueue(), maintenance=False))


def _asset_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href|spec-url)=["']([^"']+)["']""", html) + re.findall(r"url: '([^']+)'", html)


def test_root_leads_to_the_ui(client):
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/ui/"
    assert client.get("/ui", follow_redirects=False).headers["location"] == "/ui/"


@pytest.mark.parametrize("path", ["/ui/", "/ui/new", "/ui/jobs/6f1c2b8e-3f7a-4d1e-9c55-2b0c7d1e9a01"])
def test_ui_pages_load_only_local_assets(client, path):
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    urls = _asset_urls(r.text)
    assert "/ui/static/ui.js" in urls and "/ui/static/ui.css" in urls
    assert [u for u in urls if "://" in u or u.startswith("//")] == []
    for url in urls:
        if url.startswith(("/ui/static/", DOCS_ASSETS_URL)):
            assert client.get(url).status_code == 200, url


def test_job_page_escapes_its_id(client):
    r = client.get('/ui/jobs/%3Cimg%20src%3Dx%20onerror%3D%22alert(1)%22%3E')
    assert r.status_code == 200
    assert '<img src=x onerror="alert(1)">' not in r.text and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in r.text


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_are_served_from_the_installed_bundle(client, path):
    r = client.get(path)
    assert r.status_code == 200
    urls = _asset_urls(r.text)
    assert "/openapi.json" in urls
    assets = [u for u in urls if u.startswith(DOCS_ASSETS_URL)]
    assert assets and [u for u in urls if "://" in u] == []
    for url in assets:
        got = client.get(url)
        assert got.status_code == 200 and len(got.content) > 1000, url
    with open(f"{assets_dir()}/{assets[0].rsplit('/', 1)[1]}", "rb") as fh:
        assert client.get(assets[0]).content == fh.read()


def test_docs_assets_are_not_api_operations(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/ui", "/docs", "/redoc", DOCS_ASSETS_URL)) or p == "/"]


UI_JS = Path(__file__).resolve().parents[2] / "service" / "api" / "ui" / "static" / "ui.js"


def _ui_config(html: str) -> dict:
    found = re.search(r'<script id="ui-config" type="application/json">(.*?)</script>', html, re.S)
    assert found, "the page carries no ui-config"
    return json.loads(found.group(1))


def test_pages_carry_the_servers_status_set_and_defaults(client):
    from redundancy.config import PAPER_FRACTIONS
    from service.core.status import FINISHED, JobStatus

    config = _ui_config(client.get("/ui/new").text)
    assert config["statuses"] == [s.value for s in JobStatus]
    assert set(config["finished"]) == {s.value for s in FINISHED}
    assert config["defaults"]["fractions"] == list(PAPER_FRACTIONS) and len(PAPER_FRACTIONS) == 14
    jobs = client.get("/ui/").text
    assert re.findall(r'<option value="(\w+)">', jobs) == [s.value for s in JobStatus]


def test_ui_js_restates_no_server_rule():
    """The status set, the ETA and the defaults come from the server: ui.js lists no statuses, reads no
    field JobOut lacks, computes no ETA and copies no default fraction grid."""
    from service.api.schemas import JobOut

    js = UI_JS.read_text()
    statuses = re.findall(r'\[\s*"(?:queued|running|succeeded|failed|cancelled)"\s*,', js)
    assert statuses == [], statuses
    for name in re.findall(r"\bjob\.(\w+)", js):
        assert name in JobOut.model_fields, f"ui.js reads job.{name}, which JobOut does not have"
    assert "started_at" not in js and "progress_detail" not in js and "extraction" not in js


def test_catalog_suggests_64_px_for_tiny_images(client):
    items = {d["spec"]: d for d in client.get("/v1/catalog/datasets").json()["items"]}
    assert (items["digits"]["image_px"], items["digits"]["suggested_image_size"]) == (8, 64)
    assert items["cifar10"]["suggested_image_size"] == 64
    assert items["flowers102"]["suggested_image_size"] is None
