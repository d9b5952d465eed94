"""The client's network manners, unit level: a scripted `httpx.MockTransport` plays the server, and
the retry policy's `sleep` records the waits instead of sleeping."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from advisor_client import (
    Advisor,
    Conflict,
    InvalidRequest,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServerError,
    ServerUnreachable,
)
from advisor_client.http import parse_retry_after

JOB_ID = "6f1c2b8e-3f7a-4d1e-9c55-2b0c7d1e9a01"


def job_json(status: str = "queued", **extra: Any) -> dict[str, Any]:
    links = {k: f"/v1/jobs/{JOB_ID}/{k}" for k in ("result", "recommendation", "cancel", "plot_png", "plot_svg")}
    return {
        "id": JOB_ID, "status": status, "stage": None, "progress": 0.0, "message": None,
        "created_at": "2026-01-01T12:00:00Z", "config_hash": "abc", "attempts": 0,
        "request": {"model": {"name": "resnet18"}, "dataset": {"spec": "digits"}, "deltas": [0.01]},
        "links": {"self": f"/v1/jobs/{JOB_ID}", **links}, **extra,
    }


def problem(status: int, title: str, **extra: Any) -> httpx.Response:
    body = {"type": "about:blank", "title": title, "status": status, **extra}
    return httpx.Response(status, json=body, headers={"Content-Type": "application/problem+json"})


Step = httpx.Response | Exception


class Script:
    """Answers requests with the given steps in order (an exception is raised as the transport's)."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def advisor_with(script: Script, **policy: Any) -> tuple[Advisor, list[float]]:
    waits: list[float] = []
    retry = RetryPolicy(sleep=waits.append, jitter=False, **policy)
    return Advisor("http://advisor.test", api_key="k1", retry=retry, transport=httpx.MockTransport(script)), waits


def test_429_and_503_are_retried_honouring_retry_after_with_one_idempotency_key():
    script = Script(
        httpx.Response(429, headers={"Retry-After": "7"}, json={"title": "Too Many Requests", "status": 429}),
        httpx.Response(503, headers={"Retry-After": "2"}, json={"title": "Service Unavailable", "status": 503}),
        httpx.Response(202, json=job_json()),
    )
    advisor, waits = advisor_with(script)
    job = advisor.submit("resnet18", "digits", [0.01])
    assert job.id == JOB_ID and job.status == "queued"
    assert waits == [7.0, 2.0]
    keys = {r.headers["Idempotency-Key"] for r in script.requests}
    assert len(script.requests) == 3 and len(keys) == 1 and keys.pop()
    assert all(r.headers["X-API-Key"] == "k1" for r in script.requests)
    assert json.loads(script.requests[0].content) == {
        "model": {"name": "resnet18"}, "dataset": {"spec": "digits"}, "deltas": [0.01]}


def test_each_submit_gets_its_own_key_and_a_given_key_is_used_as_is():
    script = Script(*(httpx.Response(202, json=job_json()) for _ in range(3)))
    advisor, _ = advisor_with(script)
    advisor.submit("resnet18", "digits")
    advisor.submit("resnet18", "digits")
    advisor.submit("resnet18", "digits", idempotency_key="nightly-42")
    a, b, c = (r.headers["Idempotency-Key"] for r in script.requests)
    assert a != b and c == "nightly-42"


def test_a_dropped_connection_during_submit_is_retried_with_the_same_key():
    script = Script(httpx.ReadError("connection reset"), httpx.ConnectError("refused"),
                    httpx.Response(202, json=job_json()))
    advisor, waits = advisor_with(script, backoff=0.25)
    advisor.submit("resnet18", "digits")
    assert len({r.headers["Idempotency-Key"] for r in script.requests}) == 1
    assert waits == [0.25, 0.5]  # exponential backoff, no Retry-After to honour


def test_without_retry_after_the_backoff_doubles_up_to_its_cap():
    script = Script(*(httpx.Response(503) for _ in range(5)), httpx.Response(200, json=job_json()))
    advisor, waits = advisor_with(script, backoff=1.0, max_backoff=5.0)
    advisor.job(JOB_ID)
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jittered_backoff_stays_within_half_and_full_of_the_exponential_step():
    policy = RetryPolicy(backoff=1.0, max_backoff=100.0, jitter=True)
    for attempt in range(6):
        assert 0.5 * 2**attempt <= policy.backoff_delay(attempt) <= 2**attempt


def test_retry_after_as_an_http_date():
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    later = email.utils.format_datetime(now + dt.timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now) == 30.0
    assert parse_retry_after(email.utils.format_datetime(now - dt.timedelta(seconds=5), usegmt=True), now=now) == 0.0
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_retries_are_bounded_and_the_last_answer_becomes_the_exception():
    script = Script(*(problem(503, "Service Unavailable", detail="Not ready: database.") for _ in range(3)))
    advisor, waits = advisor_with(script, retries=2, backoff=0.1)
    with pytest.raises(ServerError) as info:
        advisor.job(JOB_ID)
    assert len(script.requests) == 3 and waits == [0.1, 0.2]
    assert info.value.status == 503 and info.value.detail == "Not ready: database."


def test_a_retry_after_beyond_the_limit_is_not_waited_for():
    script = Script(httpx.Response(429, headers={"Retry-After": "3600"}, json={"title": "Slow down", "status": 429}))
    advisor, waits = advisor_with(script, max_retry_after=60)
    with pytest.raises(RateLimited):
        advisor.job(JOB_ID)
    assert waits == [] and len(script.requests) == 1


def test_no_answer_after_the_bounded_tries_is_server_unreachable():
    script = Script(*(httpx.ConnectError("refused") for _ in range(3)))
    advisor, waits = advisor_with(script, connect_retries=2, backoff=0.1)
    with pytest.raises(ServerUnreachable, match="after 3 tries"):
        advisor.job(JOB_ID)
    assert len(script.requests) == 3 and waits == [0.1, 0.2]


@pytest.mark.parametrize(
    ("resp", "exc"),
    [
        (problem(422, "Request validation failed", detail="The request is invalid: fractions.",
                 type="urn:redundancy-advisor:problem:validation-error",
                 errors=[{"field": "fractions", "reason": "1.5 is outside (0, 1]", "location": "body"}]),
         InvalidRequest),
        (problem(404, "Not Found", detail="No job 'x'."), NotFound),
        (problem(409, "Conflict", detail="The job has not succeeded."), Conflict),
    ],
)
def test_errors_carry_the_problem_fields_and_are_not_retried(resp: httpx.Response, exc: type[Exception]):
    script = Script(resp)
    advisor, waits = advisor_with(script)
    with pytest.raises(exc) as info:
        advisor.job(JOB_ID)
    err = info.value
    body = resp.json()
    assert (err.status, err.title, err.type, err.detail) == (
        body["status"], body["title"], body["type"], body["detail"])
    assert err.fields == {e["field"]: e["reason"] for e in body.get("errors", [])}
    assert waits == [] and len(script.requests) == 1
    if body.get("errors"):
        assert "[fractions] 1.5 is outside (0, 1]" in str(err)


def test_an_error_without_a_problem_body_still_names_the_status():
    script = Script(httpx.Response(500, text="upstream exploded"))
    advisor, _ = advisor_with(script)
    with pytest.raises(ServerError) as info:
        advisor.job(JOB_ID)
    assert info.value.status == 500 and info.value.detail == "upstream exploded"


def _fake_server(routes: dict[str, Callable[[httpx.Request], httpx.Response]]) -> tuple[Advisor, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return routes[request.url.path](request)

    return Advisor("http://advisor.test", transport=httpx.MockTransport(handle)), seen


def test_artifact_asks_the_artifact_endpoint_and_saves_the_bytes(tmp_path):
    payload = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "
    advisor, seen = _fake_server({
        f"/v1/jobs/{JOB_ID}": lambda r: httpx.Response(200, json=job_json("succeeded")),
        f"/v1/jobs/{JOB_ID}/artifact": lambda r: httpx.Response(
            200, content=payload, headers={"Content-Type": "application/octet-stream"}),
    })
    out = advisor.job(JOB_ID).artifact(tmp_path / "head.safetensors", delta=0.05, mode="absolute",
                                        criterion="worst_seed")
    assert out.read_bytes() == payload
    assert dict(seen[-1].url.params) == {"delta": "0.05", "delta_mode": "absolute", "criterion": "worst_seed"}


def test_jobs_follows_next_page_token_until_the_end():
    pages = {None: (["a", "b"], "t1"), "t1": (["c", "d"], "t2"), "t2": (["e"], None)}

    def page(request: httpx.Request) -> httpx.Response:
        ids, token = pages[request.url.params.get("page_token")]
        items = [{**job_json("succeeded"), "id": i} for i in ids]
        return httpx.Response(200, json={"items": items, "next_page_token": token})

    advisor, seen = _fake_server({"/v1/jobs": page})
    assert [j.id for j in advisor.jobs(status="succeeded", page_size=2)] == ["a", "b", "c", "d", "e"]
    assert len(seen) == 3 and all(r.url.params["status"] == "succeeded" for r in seen)
    assert all(r.url.params["page_size"] == "2" for r in seen) and "model" not in seen[0].url.params


def test_progress_fields_from_the_server_are_read_when_present():
    from advisor_client.progress import describe

    advisor, _ = _fake_server({
        f"/v1/jobs/{JOB_ID}": lambda r: httpx.Response(200, json=job_json(
            "running", stage="extract", progress=0.42, message="batch 12/28", images_done=768, images_total=1797,
            eta_s=31.0)),
    })
    line = describe(advisor.job(JOB_ID).info)
    assert "extract" in line and "images 768/1797" in line and "ETA 31 s" in line and "42.0%" in line
    plain = describe(advisor.job(JOB_ID).info.model_copy(update={"images_done": None, "images_total": None}))
    assert "images" not in plain
