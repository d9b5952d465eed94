"""The engine's newer options over HTTP: logistic probes, baselines, subset-pair / debiased CKA,
refinement, bootstrap intervals; their round trip through the database; the plot endpoints."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from redundancy.advice.recommend import intervals_from_summary, recommend, summarize
from redundancy.config import AnalysisConfig
from redundancy.report import CurvePoint, Report
from redundancy.verdict import advise, complete
from service.core.db import session_scope
from service.core.results import curve_of
from service.main import create_app
from tests.service.conftest import single_layer, stored_answer
from workers.runner import execute_job

PROBLEM = "application/problem+json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NEW_FIELDS = (
    "probe", "baselines", "cka", "refine_resolution", "bootstrap", "ci_level",
    "logistic_epochs", "logistic_lr", "logistic_weight_decay", "logistic_batch_size",
)


def rich_report(config: AnalysisConfig, base: Report) -> Report:
    """The fake engine's report with every kind of curve point and every optional field filled in."""
    classes, D = base.dataset.classes, base.model.d  # noqa: N806
    curve: list[CurvePoint] = []
    for p in base.curve:
        curve.append(p.model_copy(update={
            "cka_pair": round(0.9 * p.cka, 6),
            "cka_debiased": round(0.95 * p.cka - 0.01, 6) if p.k % 2 == 0 else None,
            "lam": 5e-4,
        }))
    # refinement probes between 0.1 and 0.5
    for s in range(config.seeds):
        acc = 0.86 - 0.01 * s
        curve.append(CurvePoint(fraction=0.3, k=19, seed=s, accuracy=acc, per_class_accuracy=[acc + 0.05, acc,
                                acc - 0.05], cka=0.55, lam=5e-4, kind="refinement", cka_pair=0.5,
                                cka_debiased=0.52))
    # baselines at every grid k
    for kind, shift in (("pca", 0.03), ("first_k", -0.05), ("random_projection", 0.0)):
        for f in config.fractions:
            k = max(1, round(f * D))
            acc = min(1.0, 0.5 + 0.4 * f ** 0.3 + shift)
            curve.append(CurvePoint(fraction=f, k=k, seed=0, accuracy=acc,
                                    per_class_accuracy=[acc, acc, acc], cka=f ** 0.4, lam=None, kind=kind))
    intervals = {s.k: (s.accuracy_mean - 0.04, min(1.0, s.accuracy_mean + 0.03)) for s in summarize(curve)}
    summary = summarize(curve, intervals=intervals)
    baselines = [
        s.model_copy(update={"kind": kind})
        for kind in ("pca", "first_k", "random_projection")
        for s in summarize(curve, kinds=(kind,))
    ]
    recs = [recommend(curve, classes, D, dl, config.delta_mode, config.criterion, intervals)
            for dl in config.deltas]
    return base.model_copy(update={
        "curve": curve, "summary": summary, "baselines": baselines, "recommendations": recs,
        "probe": config.probe,
    })


def test_new_fields_are_accepted_echoed_and_hashed(harness, job_body):
    over: dict[str, Any] = {
        "probe": "logistic", "baselines": ["first_k", "pca", "first_k"], "cka": "debiased",
        "refine_resolution": 0.01, "bootstrap": 50, "ci_level": 0.9, "logistic_epochs": 3,
        "logistic_lr": 0.05, "logistic_weight_decay": 0.0, "logistic_batch_size": 32,
    }
    job = harness.submit(job_body(**over))
    req = job["request"]
    for key, value in over.items():
        want = ["first_k", "pca"] if key == "baselines" else value
        assert req[key] == want, key
    assert job["config_hash"] == AnalysisConfig.model_validate(job_body(**over)).config_hash()
    other = harness.submit(job_body(**{**over, "cka": "biased"}))
    assert other["config_hash"] != job["config_hash"]
    empty = harness.submit(job_body(baselines=[], refine_resolution=None, bootstrap=0))
    assert empty["request"]["baselines"] == [] and empty["request"]["refine_resolution"] is None


def test_defaults_for_new_fields_are_the_engines(harness):
    job = harness.submit({"model": {"name": "resnet18", "weights": "random"}, "dataset": {"spec": "digits"}})
    defaults = AnalysisConfig.model_validate(job["request"]).model_dump(mode="json")
    engine = AnalysisConfig(model={"name": "resnet18", "weights": "random"},
                            dataset={"spec": "digits"}).model_dump(mode="json")
    for key in NEW_FIELDS:
        assert job["request"][key] == defaults[key] == engine[key], key


def test_openapi_documents_every_config_field_with_examples(client):
    spec = client.get("/openapi.json").json()
    schema = spec["components"]["schemas"]["JobCreate"]
    props = schema["properties"]
    assert set(AnalysisConfig.model_fields) <= set(props)
    for key in NEW_FIELDS:
        assert props[key].get("description"), key
        assert props[key].get("examples"), key
    assert props["probe"]["enum"] == ["ridge", "logistic"]
    assert any(ex.get("probe") == "logistic" for ex in schema["examples"])
    post = spec["paths"]["/v1/jobs"]["post"]
    examples = post["requestBody"]["content"]["application/json"]["examples"]
    assert examples["logistic"]["value"]["probe"] == "logistic"
    for ex in examples.values():  # every documented example is itself a valid request
        AnalysisConfig.model_validate(ex["value"])
    rec = spec["components"]["schemas"]["RecommendationOut"]["properties"]
    for key in ("holds_worst_seed", "holds_ci_lower", "worst_seed_accuracy", "ci_low", "ci_high", "refined"):
        assert key in rec, key
    for fmt, media in (("png", "image/png"), ("svg", "image/svg+xml")):
        op = spec["paths"][f"/v1/jobs/{{job_id}}/plot.{fmt}"]["get"]
        assert media in op["responses"]["200"]["content"]
        assert {"404", "409"} <= set(op["responses"])
        assert any(p["name"] == "delta" for p in op["parameters"])


@pytest.fixture
def rich_job(harness, engine, job_body) -> tuple[dict[str, Any], Report]:
    plain = engine.report_fn
    engine.report_fn = lambda config: rich_report(config, plain(config))
    job = harness.submit(job_body(probe="logistic", cka="debiased", refine_resolution=0.05, bootstrap=100))
    assert harness.run_all() == ["succeeded"]
    report = engine.report_fn(AnalysisConfig.model_validate(job["request"]))
    return job, report


def test_every_curve_point_field_round_trips(harness, rich_job):
    job, report = rich_job
    with session_scope(harness.settings.db_url) as s:
        stored = curve_of(s, job["id"])
    assert stored == report.curve
    assert {p.kind for p in stored} == {"random", "refinement", "pca", "first_k", "random_projection"}
    assert any(p.cka_debiased is None for p in stored) and any(p.cka_debiased is not None for p in stored)
    got = harness.client.get(f"/v1/jobs/{job['id']}/result").json()
    assert got == report.model_dump(mode="json", by_alias=True)
    assert Report.model_validate(got) == report


def test_recommendations_equal_the_engines_from_the_stored_curve(harness, rich_job):
    job, report = rich_job
    served = Report.model_validate(harness.client.get(f"/v1/jobs/{job['id']}/result").json())
    intervals = intervals_from_summary(served.summary)
    assert intervals, "the stored summary carries bootstrap intervals"
    seen_refined = seen_ci = False
    for delta in (0.0, 0.01, 0.02, 0.05, 0.1, 0.3):
        for mode in ("relative", "absolute"):
            for crit in ("mean", "worst_seed"):
                want = complete(recommend(served.curve, served.dataset.classes, served.model.d, delta, mode, crit,
                                          intervals=intervals), served.curve, list(served.dataset.classes),
                                quantised=served.quantised)
                want = single_layer(want, served.model.layer)
                params = {"delta": delta, "delta_mode": mode, "criterion": crit}
                for path, extra in ((f"/v1/jobs/{job['id']}/recommendation", {}),
                                    ("/v1/recommendations", {"model": "resnet18", "dataset": "digits"})):
                    r = harness.client.get(path, params={**params, **extra})
                    assert r.status_code == 200, r.text
                    body = r.json()
                    assert {k: body.pop(k) for k in ("job_id", "model", "weights", "dataset")} == {
                        "job_id": job["id"], "model": "resnet18", "weights": "random", "dataset": "digits"}
                    assert body == want.model_dump(mode="json", by_alias=True), (path, delta, mode, crit)
                seen_refined |= want.refined
                seen_ci |= want.holds_ci_lower is not None
                assert want.ci_low is not None
    assert seen_refined and seen_ci
    # the engine's own stored recommendations agree with the recomputation
    for stored in served.recommendations:
        again = recommend(served.curve, served.dataset.classes, served.model.d, stored.delta, stored.mode,
                          stored.criterion, intervals=intervals)
        assert again == stored


def test_recommendation_response_carries_the_new_fields(harness, rich_job):
    job, _ = rich_job
    body = harness.client.get(f"/v1/jobs/{job['id']}/recommendation").json()
    for key in ("holds_worst_seed", "holds_ci_lower", "worst_seed_accuracy", "ci_low", "ci_high", "refined"):
        assert key in body, key
    assert isinstance(body["holds_worst_seed"], bool) and isinstance(body["refined"], bool)


# ---------------------------------------------------------------------------------------------
# plots


def test_plot_png_and_svg(harness, rich_job):
    job, _ = rich_job
    links = harness.client.get(f"/v1/jobs/{job['id']}").json()["links"]
    r = harness.client.get(links["plot_png"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.content.startswith(PNG_MAGIC) and len(r.content) > 1000
    r = harness.client.get(links["plot_svg"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(r.content)
    assert root.tag.endswith("svg")
    assert "within δ=0.01" in r.text, "the job's first δ is marked by default"


def test_plot_with_repeated_delta(harness, rich_job):
    job, _ = rich_job
    r = harness.client.get(f"/v1/jobs/{job['id']}/plot.svg", params=[("delta", "0.02"), ("delta", "0.2")])
    assert r.status_code == 200, r.text
    ET.fromstring(r.content)
    assert "δ=0.02" in r.text and "δ=0.2" in r.text and "δ=0.05" not in r.text
    r = harness.client.get(f"/v1/jobs/{job['id']}/plot.png?delta=0.05&delta=0.1")
    assert r.status_code == 200 and r.content.startswith(PNG_MAGIC)


@pytest.mark.parametrize("fmt", ["png", "svg"])
@pytest.mark.parametrize("bad", ["1.5", "-0.1", "abc"])
def test_plot_bad_delta_is_422(harness, rich_job, fmt, bad):
    job, _ = rich_job
    r = harness.client.get(f"/v1/jobs/{job['id']}/plot.{fmt}?delta=0.01&delta={bad}")
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert [e["field"] for e in r.json()["errors"]][0].startswith("delta")


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_plot_of_unknown_job_is_404_problem(client, fmt):
    r = client.get(f"/v1/jobs/00000000-0000-0000-0000-000000000000/plot.{fmt}")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert r.json()["type"].endswith("job-not-found")


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_plot_of_unfinished_or_failed_job_is_409_problem(harness, engine, job_body, fmt):
    queued = harness.submit(job_body())
    r = harness.client.get(f"/v1/jobs/{queued['id']}/plot.{fmt}")
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["job_status"] == "queued" and body["type"].endswith("result-not-ready")
    harness.sent.clear()
    engine.raise_ = RuntimeError("boom")
    failed = harness.submit(job_body(seeds=3))
    assert harness.run_all() == ["failed"]
    r = harness.client.get(f"/v1/jobs/{failed['id']}/plot.{fmt}")
    assert r.status_code == 409 and r.json()["job_status"] == "failed"


def test_plot_of_another_owners_job_is_404(tmp_path, engine, job_body, settings_factory, recording_queue):
    from fastapi.testclient import TestClient

    settings = settings_factory(tmp_path, api_keys="alpha,beta")
    with TestClient(create_app(settings, queue=recording_queue, maintenance=False)) as client:
        job = client.post("/v1/jobs", json=job_body(), headers={"X-API-Key": "alpha"}).json()
        execute_job(recording_queue.sent.pop(), settings, analyze=engine, worker_name="t")
        assert client.get(f"/v1/jobs/{job['id']}/plot.png", headers={"X-API-Key": "alpha"}).status_code == 200
        assert client.get(f"/v1/jobs/{job['id']}/plot.png", headers={"X-API-Key": "beta"}).status_code == 404


# ---------------------------------------------------------------------------------------------
# the real engine, tiny: a logistic job end to end


def test_logistic_job_with_the_real_engine_end_to_end(harness):
    body = {
        "model": {"name": "resnet18", "weights": "random"},
        "dataset": {"spec": "digits", "max_train": 200, "max_test": 100},
        "image_size": 32,
        "fractions": [0.1, 1.0],
        "seeds": 2,
        "probe": "logistic",
        "logistic_epochs": 2,
        "baselines": [],
        "cka": "debiased",
        "bootstrap": 200,
        "deltas": [0.01, 0.05],
    }
    job = harness.submit(body)
    assert harness.sent == [job["id"]]
    assert execute_job(harness.sent.pop(), harness.settings, worker_name="real") == "succeeded"
    done = harness.client.get(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "succeeded" and done["error"] is None, done

    report = Report.model_validate(harness.client.get(f"/v1/jobs/{job['id']}/result").json())
    assert report.probe == "logistic" and report.config.probe == "logistic"
    assert report.config.logistic_epochs == 2 and report.baselines == []
    assert report.model.d == 512 and len(report.dataset.classes) == 10
    assert {p.kind for p in report.curve} == {"random"} and len(report.curve) == 2 * 2 - 1
    assert all(p.cka_pair is not None for p in report.curve if p.fraction < 1.0)
    assert all(p.cka_debiased is not None for p in report.curve)
    assert all(s.ci_low is not None and s.ci_high is not None for s in report.summary)

    intervals = intervals_from_summary(report.summary)
    paired_only = {"holds_ci_lower", "margin_ci_low", "margin_ci_high", "ci_method"}  # the paired bootstrap's
    for stored in report.recommendations:
        again = advise(report.curve, report.dataset.classes, report.model.d, stored.delta,
                       stored.mode, stored.criterion, intervals=intervals)
        sweep_only = {"layer", "reference_layer", "reference_score"}  # a single layer is the sweep of one (issue 21)
        assert stored.model_dump(exclude=paired_only | sweep_only) == again.model_dump(exclude=paired_only | sweep_only)
        assert stored.layer == stored.reference_layer == report.model.layer
        assert stored.reference_score == report.full_accuracy
        assert stored.margin_ci_low is not None and stored.ci_method != again.ci_method
    for delta in (0.01, 0.2):
        for crit in ("mean", "worst_seed"):
            r = harness.client.get(f"/v1/jobs/{job['id']}/recommendation",
                                   params={"delta": delta, "criterion": crit})
            assert r.status_code == 200, r.text
            got = r.json()
            want = stored_answer(report.model_dump(mode="json"), delta, "relative", crit) or single_layer(advise(
                report.curve, report.dataset.classes, report.model.d, delta, "relative", crit, intervals=intervals),
                report.model.layer)
            assert {k: got[k] for k in want.model_dump(by_alias=True)} == want.model_dump(mode="json",
                                                                                          by_alias=True)
            assert got["holds_ci_lower"] is not None and got["ci_low"] is not None

    png = harness.client.get(f"/v1/jobs/{job['id']}/plot.png")
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)
    svg = harness.client.get(f"/v1/jobs/{job['id']}/plot.svg", params={"delta": [0.01, 0.2]})
    assert svg.status_code == 200
    ET.fromstring(svg.content)
