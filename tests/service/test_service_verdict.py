"""The deployment verdict through the API (issue 22): methods, verdict and storage on both recommendation
endpoints at any δ, budgets and fairness limits as query parameters, all equal to the engine's
`redundancy.verdict` on the stored curve; bad values are 422s naming the field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from redundancy.advice.recommend import intervals_from_summary, recommend
from redundancy.config import AnalysisConfig
from redundancy.report import CurvePoint, QuantisedScore, Report
from redundancy.verdict import Budget, FairnessLimits, advise, complete
from tests.service.conftest import CLASSES, D, fake_report

PROBLEM = "application/problem+json"


def report_with_baselines(config: AnalysisConfig) -> Report:
    """The fake report with first-k and PCA points beside the random subsets, and its recommendations
    answered by `advise` (methods, verdict, storage), as `analyze` stores them."""
    report = fake_report(config)
    extra = []
    for p in [p for p in report.curve if p.seed == 0]:
        for kind, bump in (("first_k", 0.0), ("pca", 0.03)):
            per_class = [min(1.0, a + bump) for a in p.per_class_accuracy]
            extra.append(CurvePoint(fraction=p.fraction, k=p.k, seed=0, accuracy=sum(per_class) / 3,
                                    per_class_accuracy=per_class, kind=kind, lam=1.0))
    report.curve = report.curve + extra
    report.recommendations = [advise(report.curve, CLASSES, D, dl, config.delta_mode, config.criterion)
                              for dl in config.deltas]
    report.quantised = [QuantisedScore(method="random_subset", k=r.k, seeds=2, accuracy_float=r.accuracy,
                                       accuracy_quantised=r.accuracy - 0.01, change=-0.01, calibration="test")
                        for r in report.recommendations]
    return report


@pytest.fixture
def finished(harness: Any, job_body: Any) -> tuple[dict[str, Any], Report]:
    harness.engine.report_fn = report_with_baselines
    job = harness.submit(job_body(fractions=[0.1, 0.25, 0.5, 1.0], deltas=[0.05]))
    harness.run_all()
    return job, report_with_baselines(AnalysisConfig.model_validate(job_body(fractions=[0.1, 0.25, 0.5, 1.0],
                                                                             deltas=[0.05])))


def test_methods_and_verdict_at_a_stored_and_an_unstored_delta(harness: Any, finished: Any) -> None:
    job, report = finished
    for delta in (0.05, 0.12):
        body = harness.client.get(f"/v1/jobs/{job['id']}/recommendation", params={"delta": delta}).json()
        want = complete(recommend(report.curve, CLASSES, D, delta, intervals=intervals_from_summary(report.summary)),
                        report.curve, CLASSES)
        assert [m["method"] for m in body["methods"]] == ["random_subset", "first_k", "pca"]
        assert [(m["method"], m["k"]) for m in body["methods"]] == [(m.method, m.k) for m in want.methods]
        assert body["verdict"]["method"] == want.verdict.method and body["verdict"]["k"] == want.verdict.k  # type: ignore[union-attr]
        assert body["storage"]["verdict"]["k"] == body["verdict"]["k"]
        assert body["storage"]["full"]["bytes_per_vector"]["float32"] == 4 * D
        assert body["budget"] is None and body["constrained"] is None


def test_budget_and_limits_as_query_parameters(harness: Any, finished: Any) -> None:
    job, report = finished
    url = f"/v1/jobs/{job['id']}/recommendation"
    body = harness.client.get(url, params={"delta": 0.05, "max_dims": 16}).json()
    want = complete(report.recommendations[0], report.curve, CLASSES, budget=Budget(max_dims=16))
    assert body["budget"]["max_k"] == 16 and all(m["k"] is None or m["k"] <= 16 for m in body["budget"]["methods"])
    assert [(m["method"], m["k"], m["score"]) for m in body["budget"]["methods"]] == [
        (m.method, m.k, pytest.approx(m.score)) for m in want.budget.methods]  # type: ignore[union-attr]
    # 40 bytes of int8: 40 dims; the random subsets' int8 score is the stored measurement at that k
    q8 = harness.client.get(url, params={"delta": 0.05, "max_bytes": 40, "dtype": "int8"}).json()["budget"]
    assert q8["max_k"] == 40 and q8["dtype"] == "int8"
    measured = {q.k: q.accuracy_quantised for q in report.quantised}
    for m in q8["methods"]:
        if m["method"] == "random_subset" and m["k"] in measured:
            assert m["int8_score"] == pytest.approx(measured[m["k"]])
    lim = harness.client.get(url, params={"delta": 0.05, "max_worst_class_drop": 0.02}).json()["constrained"]
    want_lim = complete(report.recommendations[0], report.curve, CLASSES,
                        limits=FairnessLimits(max_worst_class_drop=0.02)).constrained
    assert want_lim is not None and lim["k"] == want_lim.k and lim["met"] == want_lim.met
    assert lim["k"] >= report.recommendations[0].k
    if lim["met"]:
        assert lim["fairness"]["worst_class_change"] >= -0.02
    latest = harness.client.get("/v1/recommendations", params={"model": "resnet18", "dataset": "digits",
                                                                "delta": 0.05, "max_dims": 16,
                                                                "max_gini_increase": 0.01}).json()
    assert latest["budget"]["max_k"] == 16 and latest["constrained"]["max_gini_increase"] == 0.01


@pytest.mark.parametrize("params, field", [
    ({"max_dims": 0}, "max_dims"), ({"max_bytes": -1}, "max_bytes"), ({"dtype": "int4", "max_dims": 3}, "dtype"),
    ({"max_worst_class_drop": 1.5}, "max_worst_class_drop"), ({"max_gini_increase": "x"}, "max_gini_increase"),
])
def test_bad_budget_or_limit_is_a_422_naming_the_field(harness: Any, finished: Any, params: dict, field: str) -> None:
    job, _ = finished
    r = harness.client.get(f"/v1/jobs/{job['id']}/recommendation", params=params)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert field in r.text


def test_budget_for_several_datasets_is_refused(harness: Any, finished: Any) -> None:
    r = harness.client.get("/v1/recommendations", params=[("model", "resnet18"), ("dataset", "digits"),
                                                          ("dataset", "other"), ("max_dims", "8")])
    assert r.status_code == 422 and "one dataset at a time" in r.text


def test_client_and_its_cli_pass_the_budget_and_limits(harness: Any, finished: Any) -> None:
    from advisor_client import Advisor  # lazy: the client package is optional for the service tests
    from advisor_client.cli import format_recommendation

    job, _ = finished

    def forward(req: httpx.Request) -> httpx.Response:  # the client's requests, served by the app in-process
        r = harness.client.request(req.method, req.url.path, params=req.url.params, content=req.content)
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)

    with Advisor("http://testserver", transport=httpx.MockTransport(forward)) as advisor:
        rec = advisor.job(job["id"]).recommendation(0.05, max_dims=16, dtype="float16", max_worst_class_drop=0.02)
    raw = harness.client.get(f"/v1/jobs/{job['id']}/recommendation",
                             params={"delta": 0.05, "max_dims": 16, "dtype": "float16",
                                     "max_worst_class_drop": 0.02}).json()
    assert rec.model_dump(mode="json", by_alias=True) == raw
    assert rec.verdict is not None and [m.method for m in rec.methods] == ["random_subset", "first_k", "pca"]
    assert rec.budget is not None and rec.budget["dtype"] == "float16" and rec.constrained is not None
    text = format_recommendation(rec)
    assert f"verdict: ship {rec.verdict.method}" in text and "budget (k ≤ 16, float16)" in text
    assert "fairness limits:" in text
