"""The built-in web UI at /ui: server-rendered Jinja2 page shells and a little plain JavaScript.

The pages hold no data of their own: `static/ui.js` calls the /v1 JSON API with `fetch`, sending the
API key the user entered once (kept in the browser's sessionStorage) as `X-API-Key`. Nothing is loaded
from a CDN and nothing is built: the UI works offline, with auth on or off.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from redundancy.config import AnalysisConfig
from service.core.status import FINISHED, JobStatus

HERE = Path(__file__).parent
UI_PREFIX = "/ui"
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)

FORM_DEFAULTS = ("fractions", "seeds", "seed", "probe", "deltas", "delta_mode", "criterion")
"""The engine's defaults the new-analysis form shows as values (and the job pages compare against)."""


@lru_cache
def ui_config() -> dict[str, Any]:
    """What the pages take from the server instead of restating it: the status set and which statuses are
    final (``service.core.status``), and the engine's defaults (``AnalysisConfig``). Rendered into every
    page as the JSON of ``<script id="ui-config">``."""
    fields = AnalysisConfig.model_fields
    return {
        "statuses": [s.value for s in JobStatus],
        "finished": sorted(s.value for s in FINISHED),
        "defaults": {name: fields[name].get_default(call_default_factory=True) for name in FORM_DEFAULTS},
    }


def _page(request: Request, template: str, **context: object) -> HTMLResponse:
    config = ui_config()
    return templates.TemplateResponse(
        request,
        template,
        {"ui": UI_PREFIX, "config": config, "statuses": config["statuses"], "defaults": config["defaults"],
         "title": "Redundancy Advisor", **context},
    )


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse(f"{UI_PREFIX}/", status_code=307)


@router.get(UI_PREFIX)
def ui_no_slash() -> RedirectResponse:
    return RedirectResponse(f"{UI_PREFIX}/", status_code=307)


@router.get(f"{UI_PREFIX}/", response_class=HTMLResponse)
def jobs_page(request: Request) -> HTMLResponse:
    return _page(request, "jobs.html", page="jobs")


@router.get(f"{UI_PREFIX}/new", response_class=HTMLResponse)
def submit_page(request: Request) -> HTMLResponse:
    return _page(request, "submit.html", page="submit")


@router.get(UI_PREFIX + "/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str) -> HTMLResponse:
    return _page(request, "job.html", page="job", job_id=job_id)


def install_ui(app: FastAPI) -> None:
    """Mount the UI pages, their static files and the `/` → `/ui/` redirect on ``app``."""
    app.mount(f"{UI_PREFIX}/static", StaticFiles(directory=str(HERE / "static")), name="ui-static")
    app.include_router(router)
