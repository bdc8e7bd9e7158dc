"""429 with Retry-After: the worker waits at least that long before the same call again,
and otherwise carries on as after any outage; the CLI waits once (at most 30 s) and retries.

The worker is the real EdgeWorker against the scripted edge server of ``tests/support``,
which here answers chosen calls with 429 first.
"""

from __future__ import annotations

import sys
import time

import httpx
import pytest
from test_worker_agent import HOST, SECRET, _assignment, running_worker

from edgefleet.cli.api import AdminClient, ApiError
from edgefleet.contract import LogChunk
from edgefleet.errors import TooManyRequests
from edgefleet.settings import Settings
from edgefleet.throttle import DEFAULT_RETRY_AFTER, MAX_RETRY_AFTER, retry_after_seconds
from edgefleet.worker.client import EdgeClient
from support import ScriptedEdgeServer, async_wait_until

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it


class ThrottlingServer(ScriptedEdgeServer):
    """``throttle[call]``: Retry-After values the next requests of ``call`` (the URL's last
    segment: register, heartbeat, fetch, logs, results...) are answered 429 with."""

    def __init__(self, concurrency: int) -> None:
        super().__init__(HOST, concurrency=concurrency)
        self.throttle: dict[str, list[str]] = {}
        #: call -> [(monotonic time, status)] for every request that reached the server.
        self.seen: dict[str, list[tuple[float, int]]] = {}

    async def handler(self, request: httpx.Request) -> httpx.Response:
        call = request.url.path.rsplit("/", 1)[-1]
        pending = self.throttle.get(call)
        now = time.monotonic()
        if pending:
            retry_after = pending.pop(0)
            self.seen.setdefault(call, []).append((now, 429))
            return httpx.Response(
                429,
                headers={"Retry-After": retry_after},
                json={"error": "rate_limited", "detail": "slow down"},
            )
        self.seen.setdefault(call, []).append((now, 200))
        return await super().handler(request)

    def gap_after_429(self, call: str) -> float:
        """Seconds between the last 429 of ``call`` and the next request of it."""
        seen = self.seen[call]
        at = max(i for i, (_, status) in enumerate(seen) if status == 429)
        return seen[at + 1][0] - seen[at][0]

    def answered_after_429(self, call: str) -> bool:
        seen = self.seen.get(call, [])
        statuses = [status for _, status in seen]
        return 429 in statuses and 200 in statuses[statuses.index(429) :]


async def test_a_throttled_heartbeat_waits_for_retry_after(tmp_path):
    fake = ThrottlingServer(concurrency=1)
    async with running_worker(fake, tmp_path, concurrency=1):  # heartbeats every 0.2 s
        fake.throttle["heartbeat"] = ["1"]
        await async_wait_until(lambda: fake.answered_after_429("heartbeat"), timeout=10)
    assert fake.gap_after_429("heartbeat") >= 1.0
    assert len(fake.registrations) == 1  # a pause, not a reason to register again


async def test_throttled_registration_and_fetch_wait_then_run_the_job(tmp_path):
    fake = ThrottlingServer(concurrency=1)
    code = "print('ran after the pause')"
    fake.fetch_answers = [([_assignment(7, [sys.executable, "-c", code])], {})]
    fake.throttle["register"] = ["0.6"]
    fake.throttle["fetch"] = ["1", "0.5"]
    async with running_worker(fake, tmp_path, concurrency=1):
        await async_wait_until(lambda: 7 in fake.results, timeout=20)
    assert fake.gap_after_429("register") >= 0.6
    assert fake.gap_after_429("fetch") >= 0.5
    fetch_times = [t for t, _ in fake.seen["fetch"]]
    assert fetch_times[1] - fetch_times[0] >= 1.0  # the first pause, before the second 429
    assert [f.seq for f in fake.fetches][:1] == [1]  # the throttled fetch, sent again as is
    assert fake.results[7].state == "success"


async def test_throttled_logs_and_results_are_delivered_after_the_pause(tmp_path):
    fake = ThrottlingServer(concurrency=1)
    code = "print('some output')"
    fake.fetch_answers = [([_assignment(8, [sys.executable, "-c", code])], {})]
    fake.throttle["logs"] = ["0.8"]
    fake.throttle["results"] = ["0.8"]
    async with running_worker(fake, tmp_path, concurrency=1):
        await async_wait_until(lambda: 8 in fake.results, timeout=20)
        await async_wait_until(lambda: "some output" in fake.log_text(8), timeout=10)
    assert fake.gap_after_429("logs") >= 0.8
    assert fake.gap_after_429("results") >= 0.8


async def test_the_client_refuses_a_throttled_call_locally_until_the_pause_ends():
    answers = iter([httpx.Response(429, headers={"Retry-After": "30"})])
    sent: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        return next(answers, httpx.Response(204))

    client = EdgeClient("http://edgefleet.test", HOST, SECRET, httpx.MockTransport(handler))
    chunk = LogChunk(attempt=1, seq=0, data="output")
    try:
        with pytest.raises(TooManyRequests) as first:
            await client.push_log(1, chunk)
        assert first.value.retry_after == 30
        with pytest.raises(TooManyRequests) as second:
            await client.push_log(1, chunk)  # not sent: still paused
        assert 29 < second.value.retry_after <= 30
        assert client.paused_for("logs") > 29
        assert client.paused_for("heartbeat") == 0  # other calls are not held back
    finally:
        await client.aclose()
    assert len(sent) == 1


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-4", 0.0),
        (None, DEFAULT_RETRY_AFTER),
        ("soon", DEFAULT_RETRY_AFTER),
        ("nan", DEFAULT_RETRY_AFTER),
        ("86400", MAX_RETRY_AFTER),
        ("Thu, 01 Jan 1970 00:00:10 GMT", 7.0),  # an HTTP date, 7 s after "now" (3)
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date(header, seconds):
    assert retry_after_seconds(header, now=3.0) == pytest.approx(seconds)


def _admin(handler, slept: list[float]) -> AdminClient:
    settings = Settings(secret="s" * 40, api_url="http://edgefleet.test")
    return AdminClient(settings, httpx.MockTransport(handler), sleep=slept.append)


def test_the_cli_waits_out_one_429_and_retries():
    answers = iter(
        [httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200, json=[])]
    )
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return next(answers)

    slept: list[float] = []
    assert _admin(handler, slept).get("/workers") == []
    assert slept == [2.0]
    assert len(requests) == 2


def test_the_cli_fails_clearly_when_still_throttled_or_asked_to_wait_long():
    slept: list[float] = []
    requests: list[httpx.Request] = []

    def always(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(429, headers={"Retry-After": "5"})

    with pytest.raises(ApiError, match=r"rate-limiting this client \(429\): try again in 5s"):
        _admin(always, slept).post("/jobs", json={"command": ["true"]})
    assert (slept, len(requests)) == ([5.0], 2)

    slept.clear()
    requests.clear()

    def long_pause(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(429, headers={"Retry-After": "120"})

    with pytest.raises(ApiError, match="try again in 120s") as refused:
        _admin(long_pause, slept).get("/workers")
    assert refused.value.status_code == 429
    assert (slept, len(requests)) == ([], 1)  # more than 30 s: no wait, no retry
