"""The web UI and the API docs in a real browser (headless Debian chromium via Selenium) against a real
`advisor serve`: submit a small job through the form, follow it on the job page, move δ and check the
answer against the API, and render /docs and /redoc with no network beyond this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.api.schemas import SMALL_JOB_EXAMPLE

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"

pytestmark = pytest.mark.browser

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


def _screenshot(driver: Any, name: str, max_height: int = 3000) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(int(height) + 40, 700), max_height))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(SCREENSHOTS / name)), name
    driver.set_window_size(1280, 1000)


def _only_local_requests(driver: Any, server: Any) -> list[str]:
    urls = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [u for u in urls if not (u.startswith(server.base) or u.startswith("blob:") or u.startswith("data:"))]


def test_submit_follow_and_query_a_job_in_the_browser(serve, browser):
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
        assert job["request"]["model"] == SMALL_JOB_EXAMPLE["model"]
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
        _screenshot(driver, "ui-job.png")

        # The jobs list shows it with its answer at the default δ; the status filter narrows it.
        driver.get(server.base + "/ui/")
        cell = _by(f'tr[data-job="{job_id}"] .answer-cell')
        _wait(driver).until(lambda d: d.find_element(*cell).text not in ("", "…"))
        assert driver.find_element(*cell).text.startswith(_answer_text(default))
        _screenshot(driver, "ui-jobs.png", max_height=700)
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


def test_api_docs_render_offline(serve, browser):
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
    _screenshot(driver, "api-docs.png", max_height=1100)

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
