"""The web UI and the API docs in a real browser (headless Debian chromium via Selenium) against a real
`advisor serve`: submit a small job through the form, follow it on the job page, move δ and check the
answer against the API, and render /docs and /redoc with no network beyond this machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from redundancy.config import AnalysisConfig
from service.api.schemas import SMALL_JOB_EXAMPLE
from tests.checkout import changes, tree_state

SCREENSHOT_ENV = "ADVISOR_SCREENSHOT_DIR"
"""Where the screenshots go: a temporary directory, unless this names one (`make screenshots`: docs/img)."""

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", autouse=True)
def tree_before() -> Iterator[dict[str, str] | None]:
    """The checkout's state before this module's first test (empty in CI's clean clone)."""
    yield tree_state()


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    return Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "screenshots")

JOB_TIMEOUT = 300.0


def _wait(driver: Any, seconds: float = 30.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.2)


def _by(css: str) -> tuple[str, str]:
    from selenium.webdriver.common.by import By

    return (By.CSS_SELECTOR, css)


def _type(driver: Any, css: str, text: str) -> None:
    box = driver.find_element(*_by(css))
    box.clear()
    box.send_keys(text)


def _select(driver: Any, css: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(*_by(css))).select_by_value(value)


def _fill_small_job(driver: Any, max_train: str) -> None:
    job = SMALL_JOB_EXAMPLE
    _type(driver, "#f-model", job["model"]["name"])
    _type(driver, "#f-weights", job["model"]["weights"])
    _type(driver, "#f-dataset", job["dataset"]["spec"])
    _type(driver, "#f-max-train", max_train)
    _type(driver, "#f-max-test", str(job["dataset"]["max_test"]))
    _type(driver, "#f-image-size", str(job["image_size"]))
    _type(driver, "#f-fractions", ", ".join(str(f) for f in job["fractions"]))
    _type(driver, "#f-seeds", str(job["seeds"]))
    _type(driver, "#f-deltas", ", ".join(str(d) for d in job["deltas"]))
    _select(driver, "#f-delta-mode", job["delta_mode"])


def _wait_for_result(driver: Any, server: Any) -> None:
    def done(d: Any) -> bool:
        status = d.find_element(*_by("#job-status")).text
        if status in ("failed", "cancelled"):
            raise AssertionError(f"job {status}: {d.find_element(*_by('#failure')).text}\n{server.tail()}")
        return d.find_element(*_by("#result")).is_displayed() and bool(d.find_element(*_by("#answer")).text)

    _wait(driver, JOB_TIMEOUT).until(done)


def _js(x: float) -> str:
    """A number as JavaScript's String() writes it (0.0 → "0", 0.05 → "0.05")."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _answer_text(rec: dict[str, Any]) -> str:
    """What the page must show for a recommendation (the rule in ui.js, stated from the API's fields)."""
    if not rec["met_below_full"]:
        return f"keep the full layer: no tested fraction below 1 stays within δ = {_js(rec['delta'])}"
    return f"keep {rec['k']} of {rec['d']} neurons (fraction {_js(rec['fraction'])}, DR = {rec['dr']:.3f})"


def _set_delta(driver: Any, delta: float, mode: str, criterion: str = "mean") -> None:
    from selenium.webdriver.common.keys import Keys

    _select(driver, "#mode", mode)
    _select(driver, "#criterion", criterion)
    box = driver.find_element(*_by("#delta-num"))
    box.clear()
    box.send_keys(f"{delta}", Keys.TAB)  # the change event asks /recommendation
    def answered(d: Any) -> bool:
        detail = d.find_element(*_by("#answer-detail"))
        got = (detail.get_attribute("data-delta"), detail.get_attribute("data-mode"),
               detail.get_attribute("data-criterion"))
        return got[0] is not None and (float(got[0]), got[1], got[2]) == (delta, mode, criterion)

    _wait(driver).until(answered)


def _shown(driver: Any) -> dict[str, str]:
    return {
        "answer": driver.find_element(*_by("#answer")).text,
        "fraction": driver.find_element(*_by("#answer")).get_attribute("data-fraction"),
        "threshold": driver.find_element(*_by("#answer-detail")).get_attribute("data-threshold"),
        "marker": driver.find_element(*_by("#fstar-line")).get_attribute("data-fraction"),
    }


def _screenshot(driver: Any, directory: Path, name: str, max_height: int = 3000) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(int(height) + 40, 700), max_height))
    directory.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(directory / name)), name
    driver.set_window_size(1280, 1000)


def _only_local_requests(driver: Any, server: Any) -> list[str]:
    urls = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [u for u in urls if not (u.startswith(server.base) or u.startswith("blob:") or u.startswith("data:"))]


def test_submit_follow_and_query_a_job_in_the_browser(serve, browser, screenshot_dir):
    server = serve()
    driver = browser
    driver.get(server.base + "/")
    assert driver.current_url == server.base + "/ui/"
    driver.find_element(*_by("#nav-new")).click()
    _wait(driver).until(lambda d: d.find_elements(*_by("#datasets option")))
    specs = [o.get_attribute("value") for o in driver.find_elements(*_by("#datasets option"))]
    assert "digits" in specs  # the datalist comes from /v1/catalog/datasets

    # A bad value: the API's reason appears beside its field, and nothing is submitted.
    _fill_small_job(driver, max_train="5")
    driver.find_element(*_by("#submit")).click()
    err = _by('.field[data-field="dataset.max_train"] .err')
    _wait(driver).until(lambda d: d.find_element(*err).text)
    with server.client() as api:
        problem = api.post("/v1/jobs", json={**SMALL_JOB_EXAMPLE,
                                             "dataset": {**SMALL_JOB_EXAMPLE["dataset"], "max_train": 5}}).json()
        assert driver.find_element(*err).text == problem["errors"][0]["reason"]
        assert api.get("/v1/jobs").json()["items"] == []

    _type(driver, "#f-max-train", str(SMALL_JOB_EXAMPLE["dataset"]["max_train"]))
    driver.find_element(*_by("#submit")).click()
    _wait(driver).until(lambda d: "/ui/jobs/" in d.current_url)
    job_id = driver.find_element(*_by("body")).get_attribute("data-job")

    # A second, larger job queued behind it: cancelled from its page, it ends cancelled.
    with server.client() as api:
        other = api.post("/v1/jobs", json={**SMALL_JOB_EXAMPLE, "dataset": {"spec": "digits"}, "seeds": 5}).json()
    driver.get(f"{server.base}/ui/jobs/{other['id']}")
    _wait(driver).until(lambda d: d.find_element(*_by("#cancel")).is_displayed())
    driver.find_element(*_by("#cancel")).click()
    _wait(driver, 120).until(lambda d: d.find_element(*_by("#job-status")).text == "cancelled")
    assert not driver.find_element(*_by("#cancel")).is_displayed()
    assert driver.find_element(*_by("#delete")).is_displayed()

    driver.get(f"{server.base}/ui/jobs/{job_id}")
    _wait_for_result(driver, server)

    with server.client() as api:
        assert api.get(f"/v1/jobs/{other['id']}").json()["status"] == "cancelled"
        job = api.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded"
        model = SMALL_JOB_EXAMPLE["model"]  # the form sent what was typed; the rest are the defaults
        assert {k: job["request"]["model"][k] for k in model} == model
        assert job["request"]["dataset"]["max_train"] == SMALL_JOB_EXAMPLE["dataset"]["max_train"]

        def api_rec(delta: float, mode: str, criterion: str = "mean") -> dict[str, Any]:
            r = api.get(f"/v1/jobs/{job_id}/recommendation",
                        params={"delta": delta, "delta_mode": mode, "criterion": criterion})
            assert r.status_code == 200, r.text
            return r.json()

        # The page opens at the job's first δ, as the API answers by default.
        default = api.get(f"/v1/jobs/{job_id}/recommendation").json()
        assert driver.find_element(*_by("#answer")).text == _answer_text(default)

        # Move δ (and the mode): each time the answer, its threshold and the f* marker are the API's.
        seen = set()
        for delta, mode, criterion in ((0.0, "relative", "mean"), (0.9, "relative", "mean"),
                                       (0.05, "absolute", "worst_seed")):
            _set_delta(driver, delta, mode, criterion)
            rec = api_rec(delta, mode, criterion)
            shown = _shown(driver)
            assert shown["answer"] == _answer_text(rec)
            assert float(shown["fraction"]) == rec["fraction"] == float(shown["marker"])
            assert float(shown["threshold"]) == pytest.approx(rec["threshold"], rel=1e-12)
            seen.add(rec["fraction"])
        assert len(seen) > 1, "δ = 0 and δ = 0.9 should give different answers on this curve"

        # Fairness: the classes that lose most are the API's, in its order.
        rec = api_rec(0.05, "absolute", "worst_seed")
        hurt = [r.find_elements(*_by("td"))[0].text for r in driver.find_elements(*_by("#hurt tbody tr"))]
        assert hurt == [c["class"] for c in rec["fairness"]["most_hurt_classes"][:5]]

        # Back at the default δ for the screenshot; the plot image is the server's PNG.
        _set_delta(driver, default["delta"], default["mode"], default["criterion"])
        _wait(driver).until(lambda d: d.execute_script(
            "const i = document.querySelector('#plot'); return i.complete && i.naturalWidth > 0"))
        assert driver.find_element(*_by("#dl-report")).get_attribute("href").endswith(f"/v1/jobs/{job_id}/result")
        assert driver.find_element(*_by("#dl-artifact-item")).is_displayed()  # the server links an artifact
        _screenshot(driver, screenshot_dir, "ui-job.png")

        # The jobs list shows it with its answer at the default δ; the status filter narrows it.
        driver.get(server.base + "/ui/")
        cell = _by(f'tr[data-job="{job_id}"] .answer-cell')
        _wait(driver).until(lambda d: d.find_element(*cell).text not in ("", "…"))
        assert driver.find_element(*cell).text.startswith(_answer_text(default))
        _screenshot(driver, screenshot_dir, "ui-jobs.png", max_height=700)
        _select(driver, "#status-filter", "cancelled")
        _wait(driver).until(lambda d: "status=cancelled" in d.current_url)
        _wait(driver).until(lambda d: d.find_elements(*_by(f'tr[data-job="{other["id"]}"]')))
        assert not driver.find_elements(*_by(f'tr[data-job="{job_id}"]'))

        # Delete from the job page.
        driver.get(f"{server.base}/ui/jobs/{job_id}")
        _wait(driver).until(lambda d: d.find_element(*_by("#delete")).is_displayed())
        driver.find_element(*_by("#delete")).click()
        driver.switch_to.alert.accept()
        _wait(driver).until(lambda d: d.current_url == server.base + "/ui/")
        assert api.get(f"/v1/jobs/{job_id}").status_code == 404
    assert _only_local_requests(driver, server) == []


def test_api_docs_render_offline(serve, browser, screenshot_dir):
    server = serve()
    driver = browser
    with server.client() as api:
        spec = api.get("/openapi.json").json()
    operations = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}

    driver.get(server.base + "/docs")
    _wait(driver, 60).until(lambda d: len(d.find_elements(*_by(".opblock"))) >= len(operations))
    shown = {(b.find_element(*_by(".opblock-summary-method")).text,
              b.find_element(*_by(".opblock-summary-path")).get_attribute("data-path"))
             for b in driver.find_elements(*_by(".opblock"))}
    assert shown == operations
    assert _only_local_requests(driver, server) == []
    _screenshot(driver, screenshot_dir, "api-docs.png", max_height=1100)

    driver.get(server.base + "/redoc")
    _wait(driver, 60).until(lambda d: d.find_elements(*_by("[data-section-id^='tag/jobs']")))
    assert "Submit an analysis job" in driver.find_element(*_by("body")).text
    # ReDoc's bundle links its own "API docs by Redocly" badge from its site; offline it just doesn't load.
    assert [u for u in _only_local_requests(driver, server) if not u.endswith("/redoc/logo-mini.svg")] == []


def test_auth_on_key_entered_once(serve, browser):
    key = "ui-test-key-7f3a"
    server = serve(api_key=key)
    driver = browser
    driver.get(server.base + "/ui/")
    _wait(driver).until(lambda d: d.find_element(*_by("#auth-banner")).is_displayed())

    _type(driver, "#api-key", key)
    driver.find_element(*_by("#key-save")).click()
    _wait(driver).until(lambda d: d.find_element(*_by("#key-state")).text == "key set for this session")
    _wait(driver).until(lambda d: d.find_element(*_by("#jobs-empty")).is_displayed())
    assert not driver.find_element(*_by("#auth-banner")).is_displayed()

    # The key is not asked again: the form's catalog, the submission and the job page all use it.
    driver.find_element(*_by("#nav-new")).click()
    _wait(driver).until(lambda d: d.find_elements(*_by("#datasets option")))
    _fill_small_job(driver, max_train=str(SMALL_JOB_EXAMPLE["dataset"]["max_train"]))
    driver.find_element(*_by("#submit")).click()
    _wait(driver).until(lambda d: "/ui/jobs/" in d.current_url)
    job_id = driver.find_element(*_by("body")).get_attribute("data-job")
    _wait_for_result(driver, server)
    _wait(driver).until(lambda d: d.execute_script(
        "const i = document.querySelector('#plot'); return i.complete && i.naturalWidth > 0"))
    assert not driver.find_element(*_by("#auth-banner")).is_displayed()
    with server.client() as api:
        assert driver.find_element(*_by("#answer")).text == _answer_text(
            api.get(f"/v1/jobs/{job_id}/recommendation").json())
    with httpx_without_key(server) as anon:
        assert anon.get(f"/v1/jobs/{job_id}").status_code == 401


def httpx_without_key(server: Any) -> Any:
    import httpx

    return httpx.Client(base_url=server.base, timeout=30)


def _field_error(driver: Any, field: str) -> str:
    return driver.find_element(*_by(f'.field[data-field="{field}"] .err')).text


def test_new_analysis_form_real_defaults_field_marks_and_size_hint(serve, browser):
    server = serve(args=("--no-worker",))
    driver = browser
    defaults = AnalysisConfig.model_validate({"model": {"name": "x"}, "dataset": {"spec": "digits"}})
    driver.get(server.base + "/ui/new")
    _wait(driver).until(lambda d: d.find_elements(*_by("#datasets option")))

    # The engine's defaults are the fields' values (not placeholders), the 14 fractions included.
    shown = driver.find_element(*_by("#f-fractions")).get_attribute("value")
    assert [float(x) for x in shown.split(",")] == defaults.fractions and len(defaults.fractions) == 14
    assert [float(x) for x in driver.find_element(*_by("#f-deltas")).get_attribute("value").split(",")] == \
        defaults.deltas
    assert driver.find_element(*_by("#f-seeds")).get_attribute("value") == str(defaults.seeds)
    for css, value in (("#f-probe", defaults.probe), ("#f-delta-mode", defaults.delta_mode),
                       ("#f-criterion", defaults.criterion)):
        assert driver.find_element(*_by(css)).get_attribute("value") == value, css
    for css in ("#f-model", "#f-dataset"):  # nothing that looks like a value when there is none
        assert not driver.find_element(*_by(css)).get_attribute("placeholder"), css

    # Submitted empty: each missing field is marked beside it, and no banner stands in for them.
    driver.find_element(*_by("#submit")).click()
    _wait(driver).until(lambda d: _field_error(d, "model.name") and _field_error(d, "dataset.spec"))
    assert not driver.find_element(*_by("#form-error")).is_displayed()

    # Several bad values: every one marked at once, each with the API's reason.
    _type(driver, "#f-model", "resnet18")
    _type(driver, "#f-weights", "random")
    _type(driver, "#f-dataset", "digits")
    _type(driver, "#f-seeds", "0")
    _type(driver, "#f-max-train", "5")
    driver.find_element(*_by("#submit")).click()
    _wait(driver).until(lambda d: _field_error(d, "seeds") and _field_error(d, "dataset.max_train"))
    assert not _field_error(driver, "model.name") and not _field_error(driver, "dataset.spec")
    with server.client() as api:
        assert api.get("/v1/jobs").json()["items"] == []

    # digits is 8 px: the form suggests 64 px (the server's rule) and fills it in on request.
    driver.execute_script("document.querySelector('#f-dataset').dispatchEvent(new Event('change'))")
    _wait(driver).until(lambda d: "64 px" in d.find_element(*_by("#image-size-hint")).text)
    driver.find_element(*_by("#use-image-size")).click()
    assert driver.find_element(*_by("#f-image-size")).get_attribute("value") == "64"


def test_inline_chart_round_ticks_and_x_labels_apart_at_the_default_fractions(serve, browser):
    server = serve(args=("--no-worker",))
    driver = browser
    driver.get(server.base + "/ui/new")
    _wait(driver).until(lambda d: d.find_elements(*_by("#datasets option")))
    # The curve of the report (6.5 % to 98.5 %) at the fractions the form offers by default.
    ticks = driver.execute_script("""
        const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
        svg.setAttribute("viewBox", "0 0 560 300"); svg.setAttribute("width", "560"); svg.setAttribute("height", "300");
        document.body.append(svg);
        const fr = document.querySelector("#f-fractions").value.split(",").map(Number);
        const summary = fr.map((f) => ({kind: "random", fraction: f, k: Math.round(f * 1280),
                                        accuracy_mean: 0.075 + 0.9 * Math.sqrt(f)}));
        drawCurve(svg, summary, {threshold: 0.965, full_accuracy: 0.975, fraction: 0.5});
        const box = (t) => { const b = t.getBBox(); return [t.textContent, b.x, b.x + b.width]; };
        return {x: [...svg.querySelectorAll(".x-tick")].map(box),
                y: [...svg.querySelectorAll(".y-tick")].map((t) => t.textContent)};
    """)
    xs = sorted(ticks["x"], key=lambda t: t[1])
    assert xs and xs[-1][0] == "1" and len(xs) >= 5
    for (a, _, a_right), (b, b_left, _) in zip(xs, xs[1:], strict=False):
        assert a_right < b_left, f"x labels {a} and {b} overlap"
    ys = [float(t.rstrip("%")) for t in ticks["y"]]
    steps = {round(b - a, 9) for a, b in zip(ys, ys[1:], strict=False)}
    assert len(steps) == 1 and 4 <= len(ys) <= 8, ticks["y"]
    step = steps.pop()
    assert any(step == m * 10.0 ** e for m in (1, 2, 2.5, 5) for e in range(-2, 3)), step
    assert all(abs(v / step - round(v / step)) < 1e-9 for v in ys), ys
    lowest = 7.5 + 90 * min(float(x) for x in driver.find_element(*_by("#f-fractions")).get_attribute("value")
                            .split(",")) ** 0.5
    assert ys[0] <= lowest and ys[-1] >= 97.5, ys  # the whole curve and the full layer are inside


def test_ui_and_advisor_status_show_the_same_eta_and_the_seeds(serve, browser):
    """One running job, its extraction progress written as a worker writes it: the job page and
    `advisor status` print the server's ETA alike; jobs that differ only in seed show their seeds."""
    from service.core import lifecycle
    from service.core.db import session_scope

    server = serve(args=("--no-worker",), env={"ADVISOR_STALE_AFTER": "3600"})
    driver = browser
    with server.client() as api:
        plain = api.post("/v1/jobs", json={**SMALL_JOB_EXAMPLE, "seeds": 5}).json()
        seeded = api.post("/v1/jobs", json={**SMALL_JOB_EXAMPLE, "seed": 3}).json()
    url = f"sqlite:///{server.data_dir.resolve() / 'advisor.sqlite'}"
    with session_scope(url) as s:
        claim = lifecycle.claim(s, plain["id"], worker="ui-test", stale_after=3600)
        assert claim is not None
        eta = lifecycle.eta_seconds(300, 1234, 41.37)
        assert lifecycle.heartbeat(s, plain["id"], claim.attempt, progress=0.3, stage="extract", message=None,
                                   stage_timings={}, images=lifecycle.ImagesProgress(300, 1234, eta))

    driver.get(f"{server.base}/ui/jobs/{plain['id']}")
    _wait(driver).until(lambda d: "ETA" in d.find_element(*_by("#progress-text")).text)
    ui_eta = re.findall(r"ETA \d+ s", driver.find_element(*_by("#progress-text")).text)
    cli = subprocess.run([sys.executable, "-m", "service.cli", "status", plain["id"], "--server", server.base],
                         capture_output=True, text=True, timeout=120, check=False)
    assert cli.returncode == 0, cli.stderr
    assert ui_eta == re.findall(r"ETA \d+ s", cli.stdout) == [f"ETA {eta:.0f} s"]

    # The list and the job page name the seed and the seeds where they differ from the engine's defaults.
    driver.get(server.base + "/ui/")
    cell = _by(f'tr[data-job="{seeded["id"]}"] td:nth-child(3)')
    _wait(driver).until(lambda d: d.find_elements(*cell))
    assert "seed 3, 2 seeds" in driver.find_element(*cell).text
    assert "seed" not in driver.find_element(*_by(f'tr[data-job="{plain["id"]}"] td:nth-child(3)')).text
    driver.get(f"{server.base}/ui/jobs/{seeded['id']}")
    _wait(driver).until(lambda d: "seed 3, 2 seeds" in d.find_element(*_by("#job-what")).text)


def test_the_browser_tests_leave_the_checkout_as_they_found_it(tree_before):
    """Runs after this module's tests (pytest keeps file order), the ones that write screenshots included:
    they wrote to temporary directories, so the checkout is unchanged; in CI's clean clone that is
    `git status --porcelain` empty. Only `make screenshots` writes docs/img."""
    if tree_before is None:
        pytest.skip("not a git work tree")
    if os.environ.get(SCREENSHOT_ENV):
        pytest.skip(f"{SCREENSHOT_ENV} is set: this run writes screenshots into the tree on purpose")
    after = tree_state()
    assert after is not None and changes(tree_before, after) == []


def test_the_form_uploads_a_chosen_file_and_submits_the_job_on_it(serve, browser, tmp_path):
    """The new-analysis form with a file: uploaded first (POST /v1/datasets), then the job names
    `upload:<id>`; a file the server refuses gets its reason beside the file field."""
    import hashlib

    import numpy as np

    from redundancy import config as engine_config

    server = serve()
    driver = browser
    bad = tmp_path / "vectors.csv"
    bad.write_text("a,b\n")
    good = tmp_path / "vectors.npz"
    rng = np.random.default_rng(0)
    np.savez(good, x_train=rng.normal(size=(40, 8)).astype(np.float32), y_train=np.arange(40) % 2,
             x_test=rng.normal(size=(20, 8)).astype(np.float32), y_test=np.arange(20) % 2)
    sha = hashlib.sha256(good.read_bytes()).hexdigest()

    driver.get(server.base + "/ui/new")
    _wait(driver).until(lambda d: d.find_elements(*_by("#datasets option")))
    if not hasattr(engine_config, "PRECOMPUTED"):  # before the engine reads vectors, any model it accepts
        _type(driver, "#f-model", SMALL_JOB_EXAMPLE["model"]["name"])
        _type(driver, "#f-weights", SMALL_JOB_EXAMPLE["model"]["weights"])
    driver.find_element(*_by("#f-file")).send_keys(str(bad))
    driver.find_element(*_by("#submit")).click()
    err = _by('.field[data-field="file"] .err')
    _wait(driver).until(lambda d: d.find_element(*err).text)
    assert ".npz" in driver.find_element(*err).text

    driver.find_element(*_by("#f-file")).clear()
    driver.find_element(*_by("#f-file")).send_keys(str(good))
    driver.find_element(*_by("#submit")).click()
    _wait(driver).until(lambda d: "/ui/jobs/" in d.current_url)
    job_id = driver.find_element(*_by("body")).get_attribute("data-job")
    with server.client() as api:
        assert [d["id"] for d in api.get("/v1/datasets").json()["items"]] == [sha]
        assert api.get(f"/v1/jobs/{job_id}").json()["request"]["dataset"]["spec"] == f"upload:{sha}"
