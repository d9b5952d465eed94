"""The layout of docs/architecture.md holds: the import contracts are kept, the worker process never loads
FastAPI, and every import placed inside a function of the service or the workers says why."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("redundancy", "service", "workers", "migrations")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip(f"import-linter is not installed beside {sys.executable} (pip install -e '.[dev]')")
    out = subprocess.run([str(lint)], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_the_worker_process_never_imports_fastapi():
    """What `celery -A workers.celery_app worker` and `advisor worker` import, in a fresh interpreter."""
    code = (
        "import sys\n"
        "import service.cli, workers.celery_app, workers.tasks, workers.runner\n"
        "workers.celery_app.app.loader.import_default_modules()\n"  # the task modules a worker loads at start
        "web = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette', 'uvicorn', 'httpx'))\n"
        "api = sorted(m for m in sys.modules if m.startswith(('service.api', 'service.main', 'service.broker')))\n"
        "print(web, api, 'redundancy.pipeline' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-3:] == ["[]", "[]", "True"], f"the worker loaded web modules: {out.stdout[-2000:]}"


def _function_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, source line) of every import inside a function body without a ``# lazy: reason`` comment."""
    lines = path.read_text().splitlines()
    bad: list[tuple[int, str]] = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Import | ast.ImportFrom):
                line = lines[node.lineno - 1]
                if "# lazy: " not in line:
                    bad.append((node.lineno, line.strip()))
    return bad


def test_imports_inside_functions_state_their_reason():
    bad = {
        str(p.relative_to(ROOT)): found
        for pkg in PRODUCT
        for p in sorted((ROOT / pkg).rglob("*.py"))
        if (found := _function_level_imports(p))
    }
    assert bad == {}, "give each function-level import a one-line `# lazy: reason`, or move it to the top"


def test_the_reason_check_finds_a_bare_function_level_import(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    import json\n    from os import path  # lazy: a reason\n    return json, path\n")
    assert _function_level_imports(src) == [(2, "import json")]


def _import_cycles(package: str) -> list[tuple[str, str]]:
    """Every direct import `a -> b` between `package`'s submodules from which a chain leads back to `a`. The
    package's own `__init__` is left out: it is the facade that re-exports (lazily) from the submodules,
    which read `__version__` from it."""
    grimp = pytest.importorskip("grimp")  # installed with import-linter
    graph = grimp.build_graph(package)
    return sorted(
        (a, b) for a in graph.modules if a != package for b in graph.find_modules_directly_imported_by(a)
        if b.startswith(f"{package}.") and graph.chain_exists(importer=b, imported=a)
    )


def test_the_engine_has_no_import_cycle():
    """The layers contract orders the sub-packages; this also rules out a circle inside one of them (lazy
    imports included: grimp reads imports inside functions too)."""
    assert _import_cycles("redundancy") == []


def test_the_cycle_check_finds_a_circle(tmp_path, monkeypatch):
    pkg = tmp_path / "circle_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from circle_pkg import b  # lazy: the circle under test\n")
    (pkg / "b.py").write_text("from circle_pkg import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _import_cycles("circle_pkg") == [("circle_pkg.a", "circle_pkg.b"), ("circle_pkg.b", "circle_pkg.a")]


@pytest.mark.parametrize("code", [
    "import redundancy",
    "import redundancy.report",
    "import redundancy.progress, redundancy.config",
    "import service.cli; service.cli.build_parser()",  # what `advisor --help` and `advisor submit --help` load
])
def test_the_light_entry_points_load_neither_torch_nor_timm(code):
    """`import redundancy` is pydantic only (`analyze` is imported on first access); a fresh interpreter,
    since this test process has torch loaded already."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm')))\n"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[-2] == "[]", f"{code!r} loaded torch or timm: {out.stdout[-500:]}"


def test_analyze_is_still_there_on_first_access():
    code = "import sys, redundancy\nf = redundancy.analyze\nprint(f.__module__, 'torch' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["redundancy.pipeline", "True"]
