"""Webhooks: a signed event on every terminal state, delivered to a real receiver on loopback, retried with
backoff, recorded and listed; callback URLs to private addresses refused. Jobs run in-process (fake
engine); the sender is called directly (`run_deliveries_once`), as the API's sender thread calls it."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import ipaddress
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook, WebhookVerificationError

from service.api.schemas import SMALL_JOB_EXAMPLE
from service.core import webhooks
from service.core.webhook_delivery import run_deliveries_once
from service.main import create_app
from tests.service.hooks import HookReceiver
from workers.runner import execute_job


def small_job(**over: object) -> dict:
    return {**copy.deepcopy(SMALL_JOB_EXAMPLE), **over}


class Receiver(HookReceiver):
    """Keeps (lower-cased headers, body) of each POST; `url` is where the jobs send."""

    def __init__(self, codes: list[int] | None = None) -> None:
        super().__init__(codes)
        self.url = f"{self.base}/hooks/advisor?src=test"

    def record(self, path: str, headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        return headers, body


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def settings(tmp_path, settings_factory):  # the harness's settings: loopback callbacks allowed, no backoff
    return settings_factory(tmp_path, webhook_allow="loopback", webhook_backoff=0.0, webhook_max_attempts=4)


def _finished_job(harness, receiver: Receiver, **over) -> dict:
    job = harness.submit(small_job(callback_url=receiver.url, **over))
    harness.run_all()
    return harness.client.get(f"/v1/jobs/{job['id']}").json()


def _deliveries(harness, job_id: str) -> list[dict]:
    r = harness.client.get(f"/v1/jobs/{job_id}/deliveries")
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _spec_signature(secret: str, headers: dict[str, str], body: bytes) -> str:
    """The Standard Webhooks signature computed by hand: base64(HMAC-SHA256(key, "id.timestamp.body"))."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def test_a_succeeded_job_posts_one_signed_event_with_its_answers(harness, receiver):
    job = _finished_job(harness, receiver)
    assert job["status"] == "succeeded" and job["callback_url"] == receiver.url
    [pending] = _deliveries(harness, job["id"])
    assert pending["state"] == "pending" and pending["attempts"] == 0 and pending["event"] == "job.succeeded"
    assert receiver.got == []  # nothing is sent by the job or the request: the sender does it

    assert run_deliveries_once(harness.settings)["delivered"] == 1
    [(headers, body)] = receiver.got
    secret = harness.client.get("/v1/webhooks/secret").json()["secret"]
    assert headers["webhook-signature"] == _spec_signature(secret, headers, body)
    event = Webhook(secret).verify(body, headers)
    assert event["type"] == "job.succeeded" and headers["content-type"] == "application/json"
    data = event["data"]
    assert data["job_id"] == job["id"] and data["status"] == "succeeded" and data["error"] is None
    stored = harness.client.get(f"/v1/jobs/{job['id']}/result").json()["recommendations"]
    assert data["recommendations"] == stored and {r["delta"] for r in stored} == {0.01, 0.05}
    assert data["links"] == job["links"]

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"succeeded", b"failed"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(body, headers)

    [done] = _deliveries(harness, job["id"])
    assert done["state"] == "delivered" and done["id"] == headers["webhook-id"] and done["attempts"] == 1
    assert [h["status_code"] for h in done["history"]] == [204] and done["delivered_at"]
    assert run_deliveries_once(harness.settings)["delivered"] == 0 and len(receiver.got) == 1


def test_retried_with_backoff_after_the_receiver_fails_twice(harness, receiver):
    receiver.codes = [500, 503]
    job = _finished_job(harness, receiver)
    for want_state, want_attempts in [("pending", 1), ("pending", 2), ("delivered", 3)]:
        run_deliveries_once(harness.settings)
        [d] = _deliveries(harness, job["id"])
        assert (d["state"], d["attempts"]) == (want_state, want_attempts)
    assert [h["status_code"] for h in d["history"]] == [500, 503, 204]
    assert [h["error"] for h in d["history"]] == ["HTTP 500", "HTTP 503", None]
    ids = {h["webhook-id"] for h, _ in receiver.got}
    assert ids == {d["id"]} and len(receiver.got) == 3  # the same event id on every attempt
    secret = harness.client.get("/v1/webhooks/secret").json()["secret"]
    for headers, body in receiver.got:
        Webhook(secret).verify(body, headers)


def test_backoff_doubles_and_the_next_attempt_waits(harness, receiver, settings):
    assert [webhooks.retry_delay(n, 10.0) for n in (1, 2, 3, 4)] == [10.0, 20.0, 40.0, 80.0]
    assert webhooks.retry_delay(30, 10.0) == webhooks.MAX_BACKOFF
    receiver.codes = [500]
    job = _finished_job(harness, receiver)
    slow = settings.model_copy(update={"webhook_backoff": 3600.0})
    run_deliveries_once(slow)
    [d] = _deliveries(harness, job["id"])
    assert d["state"] == "pending" and d["next_attempt_at"] > d["history"][0]["at"]
    assert run_deliveries_once(slow) == {"pending": 0, "delivered": 0, "failed": 0}  # not due yet
    assert len(receiver.got) == 1


def test_gives_up_after_max_attempts_when_nothing_listens(harness, receiver):
    job = _finished_job(harness, receiver)
    receiver.close()  # connection refused from now on
    for _ in range(harness.settings.webhook_max_attempts + 2):
        run_deliveries_once(harness.settings)
    [d] = _deliveries(harness, job["id"])
    assert d["state"] == "failed" and d["attempts"] == harness.settings.webhook_max_attempts
    assert all(h["status_code"] is None and "Connection" in h["error"] for h in d["history"])


def test_failed_and_cancelled_jobs_announce_themselves(harness, receiver, engine):
    engine.raise_ = RuntimeError("boom")
    failed = _finished_job(harness, receiver)
    queued = harness.submit(small_job(callback_url=receiver.url, seeds=3))
    harness.client.post(f"/v1/jobs/{queued['id']}/cancel")
    run_deliveries_once(harness.settings)
    events = {json.loads(b)["data"]["job_id"]: json.loads(b) for _, b in receiver.got}
    assert events[failed["id"]]["type"] == "job.failed"
    assert events[failed["id"]]["data"]["error"]["code"] == "internal_error"
    assert events[failed["id"]]["data"]["recommendations"] == []
    assert events[queued["id"]]["type"] == "job.cancelled"


def test_no_callback_no_delivery(harness):
    job = harness.submit()
    harness.run_all()
    assert _deliveries(harness, job["id"]) == []
    assert harness.client.get(f"/v1/jobs/{job['id']}").json()["callback_url"] is None


def test_deleting_a_job_drops_its_deliveries(harness, receiver):
    job = _finished_job(harness, receiver)
    assert harness.client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert harness.client.get(f"/v1/jobs/{job['id']}/deliveries").status_code == 404
    assert run_deliveries_once(harness.settings)["delivered"] == 0 and receiver.got == []


def test_idempotency_key_covers_the_callback_url(harness, receiver):
    first = harness.submit(small_job(callback_url=receiver.url), **{"Idempotency-Key": "k1"})
    again = harness.client.post("/v1/jobs", json=small_job(callback_url=receiver.url),
                                headers={"Idempotency-Key": "k1"})
    assert again.status_code == 202 and again.json()["id"] == first["id"]
    other = harness.client.post("/v1/jobs", json=small_job(callback_url=receiver.url + "&x=1"),
                                headers={"Idempotency-Key": "k1"})
    assert other.status_code == 409


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10:8080/hook", "private"),
        ("https://[fd00::1]/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://0.0.0.0/", "reserved"),
        ("ftp://example.com/hook", "only http and https"),
        ("http:///nohost", "no host"),
        ("http://user:pw@127.0.0.1/", "credentials"),
        ("http://no-such-host.invalid/", "cannot be resolved"),
    ],
)
def test_private_and_malformed_callback_urls_are_refused(harness, url, says):
    r = harness.client.post("/v1/jobs", json=small_job(callback_url=url))
    assert r.status_code == 422, r.text
    [err] = r.json()["errors"]
    assert err["field"] == "callback_url" and says in err["reason"]
    assert harness.client.get("/v1/jobs").json()["items"] == []


def test_loopback_is_refused_unless_the_setting_allows_it(tmp_path, settings_factory, recording_queue, receiver):
    s = settings_factory(tmp_path)  # ADVISOR_WEBHOOK_ALLOW unset
    with TestClient(create_app(s, queue=recording_queue, maintenance=False)) as client:
        for url in (receiver.url, receiver.url.replace("127.0.0.1", "localhost"), "http://[::1]:9/"):
            r = client.post("/v1/jobs", json=small_job(callback_url=url))
            assert r.status_code == 422 and "loopback" in r.json()["errors"][0]["reason"], (url, r.text)


def test_an_address_refused_at_send_time_fails_without_retry(harness, receiver, settings):
    job = _finished_job(harness, receiver)
    strict = settings.model_copy(update={"webhook_allow": ""})  # e.g. the name now resolves elsewhere
    run_deliveries_once(strict)
    [d] = _deliveries(harness, job["id"])
    assert d["state"] == "failed" and d["attempts"] == 1 and d["last_error"].startswith("refused:")
    assert receiver.got == []


def test_each_api_key_signs_with_its_own_secret(tmp_path, settings_factory, receiver, engine, recording_queue):
    s = settings_factory(tmp_path, api_keys="key-one,key-two", webhook_allow="loopback")
    with TestClient(create_app(s, queue=recording_queue, maintenance=False)) as client:
        one = client.get("/v1/webhooks/secret", headers={"X-API-Key": "key-one"}).json()["secret"]
        two = client.get("/v1/webhooks/secret", headers={"X-API-Key": "key-two"}).json()["secret"]
        assert one != two and one.startswith("whsec_") and len(base64.b64decode(one[6:])) == 32
        assert client.get("/v1/webhooks/secret").status_code == 401
        job = client.post("/v1/jobs", json=small_job(callback_url=receiver.url), headers={"X-API-Key": "key-two"})
        execute_job(job.json()["id"], s, analyze=engine, worker_name="test")
        theirs = client.get(f"/v1/jobs/{job.json()['id']}/deliveries", headers={"X-API-Key": "key-one"})
        assert theirs.status_code == 404
    run_deliveries_once(s)
    [(headers, body)] = receiver.got
    Webhook(two).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(one).verify(body, headers)


@pytest.mark.parametrize(
    ("addr", "category"),
    [("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"), ("10.0.0.1", "private"),
     ("172.16.5.4", "private"), ("100.64.0.1", "private"), ("fe80::1", "link-local"), ("169.254.1.1", "link-local"),
     ("224.0.0.1", "reserved"), ("8.8.8.8", None), ("2606:4700::1111", None)],
)
def test_address_categories(addr, category):
    assert webhooks.address_category(ipaddress.ip_address(addr)) == category


def test_allowance_by_category_and_cidr():
    allow = webhooks.Allowance.parse("loopback, 10.20.0.0/16")
    assert webhooks.address_allowed(ipaddress.ip_address("127.0.0.2"), allow)
    assert webhooks.address_allowed(ipaddress.ip_address("10.20.3.4"), allow)
    assert not webhooks.address_allowed(ipaddress.ip_address("10.21.3.4"), allow)
    assert webhooks.address_allowed(ipaddress.ip_address("1.1.1.1"), webhooks.Allowance.parse(""))
    with pytest.raises(ValueError, match="neither"):
        webhooks.Allowance.parse("intranet")


def test_a_name_server_that_never_answers_costs_a_bounded_wait_not_a_hang(monkeypatch) -> None:
    """A lookup that hangs (the schemathesis run stalled the event loop on one, 2026-12-04) ends after
    RESOLVE_TIMEOUT as an unresolvable host, for callbacks and MLflow tracking servers alike."""
    import socket
    import threading
    import time

    from service.core import webhooks

    release = threading.Event()

    def hung(*args, **kwargs):  # noqa: ANN002, ANN003
        release.wait(10)
        raise socket.gaierror("released")

    monkeypatch.setattr(webhooks, "RESOLVE_TIMEOUT", 0.2)
    monkeypatch.setattr(socket, "getaddrinfo", hung)
    try:
        start = time.monotonic()
        reason = webhooks.callback_url_problem("https://hangs.example.com/hook", webhooks.Allowance.parse(""))
        assert time.monotonic() - start < 2.0
        assert reason is not None and "cannot be resolved" in reason and "no answer within 0.2 s" in reason
    finally:
        release.set()
