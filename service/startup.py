"""What `advisor serve` prints when it starts: one line per component, banners only with --verbose.

Without ``--verbose`` Alembic's migration chatter and Uvicorn's start-up lines are held back to
warnings (errors still show, and so does Uvicorn's access log at the chosen level), and the embedded
Celery worker starts with ``--quiet`` (no banner). With ``--verbose`` everything is as the libraries print it.
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Any

QUIET_LOGGERS = ("alembic",)


def quiet_libraries(verbose: bool) -> None:
    """Hold the migration tool's INFO lines back unless the user asked for them."""
    if not verbose:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def quiet_celery() -> None:
    """No "running the worker with superuser privileges" box in a quiet start (containers often run as root)."""
    from celery.platforms import SecurityWarning  # lazy: the API process never loads Celery

    warnings.filterwarnings("ignore", category=SecurityWarning)


def uvicorn_log_config(level: str, verbose: bool, json_lines: bool = False) -> dict[str, Any]:
    """Uvicorn's own logging config, with its start-up lines (`uvicorn.error` INFO) held back when quiet;
    ``json_lines``: its lines as JSON too (``ADVISOR_LOG_FORMAT=json``, :class:`service.core.logs.JsonLines`)."""
    from uvicorn.config import LOGGING_CONFIG  # lazy: the worker process never loads uvicorn

    cfg = copy.deepcopy(LOGGING_CONFIG)
    if json_lines:
        cfg["formatters"] = {name: {"()": "service.core.logs.JsonLines"} for name in cfg["formatters"]}
    lvl = level.upper()
    for name in ("uvicorn", "uvicorn.access"):
        cfg["loggers"][name]["level"] = lvl
    numeric = logging.getLevelNamesMapping().get(lvl, logging.INFO)
    cfg["loggers"]["uvicorn.error"]["level"] = lvl if verbose or numeric >= logging.WARNING else "WARNING"
    return cfg


def component_line(component: str, text: str) -> str:
    return f"advisor: {component:<9}{text}"


def print_component(component: str, text: str) -> None:
    print(component_line(component, text), flush=True)
