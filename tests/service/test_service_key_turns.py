"""Per-key turns (issue 23, probe 8): at most ADVISOR_MAX_IN_FLIGHT_PER_KEY requests of one caller at once, the
rest waiting their turn in order behind their own caller only; a request that cannot get a turn (too many
waiting, or waited ADVISOR_MAX_TURN_WAIT) is 503 + Retry-After at once, never left hanging."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from service.api.limits import KeySlots, NoTurn, RateGate, RateLimiter
from tests.service.conftest import make_settings


def test_turns_are_given_in_order_per_key_and_other_keys_never_wait() -> None:
    async def scenario() -> list[str]:
        slots = KeySlots(per_key=2, max_wait=5, max_waiting=10)
        order: list[str] = []
        gate = asyncio.Event()

        async def request(key: str, name: str) -> None:
            await slots.acquire(key)
            order.append(name)
            try:
                await gate.wait()
            finally:
                slots.release(key)

        tasks = [asyncio.create_task(request("a", f"a{i}")) for i in range(5)]
        await asyncio.sleep(0.01)
        assert order == ["a0", "a1"] and slots.in_flight("a") == 5  # two in, three waiting
        b = asyncio.create_task(request("b", "b0"))
        await asyncio.sleep(0.01)
        assert order[-1] == "b0"  # another key is not behind a's queue
        gate.set()
        await asyncio.gather(*tasks, b)
        assert slots.in_flight("a") == 0 and not slots._slots  # nothing kept for idle callers
        return order

    order = asyncio.run(scenario())
    assert [n for n in order if n.startswith("a")] == ["a0", "a1", "a2", "a3", "a4"]


def test_no_turn_when_too_many_wait_or_the_wait_is_too_long_and_a_cancelled_waiter_leaves_no_trace() -> None:
    async def scenario() -> None:
        slots = KeySlots(per_key=1, max_wait=0.2, max_waiting=2)
        await slots.acquire("a")
        waiters = [asyncio.create_task(slots.acquire("a")) for _ in range(2)]
        await asyncio.sleep(0.01)
        start = time.monotonic()
        with pytest.raises(NoTurn, match="wait already"):
            await slots.acquire("a")  # the third waiter: refused at once
        assert time.monotonic() - start < 0.1
        for w in waiters:
            with pytest.raises(NoTurn, match="no turn within 0.2 s"):
                await w
        assert slots.in_flight("a") == 1  # the holder only
        pending = asyncio.create_task(slots.acquire("a"))
        await asyncio.sleep(0.01)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        assert slots.in_flight("a") == 1
        slots.release("a")
        assert not slots._slots

    asyncio.run(scenario())


def test_the_gate_answers_503_with_retry_after_when_a_key_gets_no_turn(tmp_path) -> None:
    """Through the gate: key A holds its one turn; A's next request waits ADVISOR_MAX_TURN_WAIT and is 503
    problem+json with Retry-After; key B is served meanwhile."""
    settings = make_settings(tmp_path, api_keys="ka,kb", max_in_flight_per_key=1, max_turn_wait=0.2, retry_after=7,
                             rate_limit="")
    release = asyncio.Event()

    async def app(scope, receive, send) -> None:  # noqa: ANN001 - a route that holds key A's turn
        if scope["path"] == "/v1/hold":
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    gate = RateGate(app, settings, RateLimiter(settings))

    async def call(path: str, key: str) -> tuple[int, dict[str, str], bytes]:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b""}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "headers": [(b"x-api-key", key.encode())],
                 "client": ("127.0.0.1", 1), "query_string": b""}
        await gate(scope, receive, send)
        headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
        return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])

    async def scenario() -> None:
        holder = asyncio.create_task(call("/v1/hold", "ka"))
        await asyncio.sleep(0.01)
        start = time.monotonic()
        status, headers, body = await call("/v1/jobs", "ka")
        assert status == 503 and headers["retry-after"] == "7" and time.monotonic() - start < 1.0
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["detail"].startswith("No turn within 0.2 s")
        assert (await call("/v1/jobs", "kb"))[0] == 200  # another key: served at once
        release.set()
        assert (await holder)[0] == 200
        assert (await call("/v1/jobs", "ka"))[0] == 200 and gate.shed == 1

    asyncio.run(scenario())
