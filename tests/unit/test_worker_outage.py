"""A worker outlives a day-long server outage and comes back by itself.

A real day cannot pass in a test: the worker runs on an event loop whose clock skips ahead
whenever it would sit idle (``support.virtual_clock``), against a scripted server
(``httpx.MockTransport``) that refuses connections for 24 hours of that clock. Every retry
the worker makes in that day really happens, only without the waits between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from edgefleet.contract import LocalMaintenance, ReportedResult
from edgefleet.errors import ServerUnavailable
from edgefleet.worker.agent import EdgeWorker, WorkerConfig
from edgefleet.worker.client import EdgeClient
from edgefleet.worker.statefile import write_control
from support import async_wait_until, flag_desired_state
from support.virtual_clock import run_in_virtual_time

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

HOST = "outage-edge"
DAY = 24 * 3600.0


class FlakyServer:
    """Answers the worker API, except while down: then every connection is refused. Once
    back it may have forgotten the worker (409 until it registers again)."""

    def __init__(self) -> None:
        self.desired = flag_desired_state()
        self.down_until = 0.0
        self.refused = 0
        self.instance: str | None = None
        #: Calls answered since the server was last down.
        self.answered: list[str] = []
        self.maintenance: list[LocalMaintenance] = []
        #: Calls answered with a 200 whose body is not the API's.
        self.garbled: set[str] = set()

    def go_down(self, seconds: float, forget: bool = False) -> None:
        self.down_until = asyncio.get_running_loop().time() + seconds
        self.answered.clear()
        if forget:
            self.instance = None

    def change(self, **fields) -> None:
        self.desired = {**self.desired, **fields, "version": self.desired["version"] + 1}
        self.answered.clear()

    def _contact(self) -> httpx.Response:
        body = {"desired": self.desired, "server_time": datetime.now(UTC).isoformat()}
        return httpx.Response(200, json=body)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if asyncio.get_running_loop().time() < self.down_until:
            self.refused += 1
            raise httpx.ConnectError("connection refused", request=request)
        action = request.url.path.rsplit("/", 1)[-1]
        instance = request.url.params.get("instance_id")
        if request.content:
            instance = json.loads(request.content).get("instance_id")
        if action == "register":
            self.instance = instance
        elif instance != self.instance:
            return httpx.Response(409, json={"detail": "unknown instance"})
        self.answered.append(action)
        if action in self.garbled:
            return httpx.Response(200, text="<html>502 Bad Gateway</html>")
        if action == "watch":
            await asyncio.sleep(float(request.url.params["timeout"]))
        elif action == "fetch":
            return httpx.Response(200, json={"jobs": [], "desired": self.desired})
        elif action == "maintenance":
            switch = LocalMaintenance.model_validate_json(request.content)
            self.maintenance.append(switch)
            self.desired = {
                **self.desired,
                "maintenance": switch.maintenance,
                "version": self.desired["version"] + 1,
            }
        return self._contact()


@contextlib.asynccontextmanager
async def worker_against(server: FlakyServer, home: Path) -> AsyncIterator[asyncio.Task[None]]:
    """A real EdgeWorker with its default intervals (30 s heartbeats, 5 s polls)."""
    config = WorkerConfig(
        hostname=HOST, concurrency=1, queues=["default"], home=home, api_url="http://x.test"
    )
    client = EdgeClient(
        config.api_url, HOST, "s" * 40, transport=httpx.MockTransport(server.handler)
    )
    worker = EdgeWorker(config, client)
    task = asyncio.create_task(worker.run())
    task.worker = worker  # type: ignore[attr-defined]
    try:
        yield task
    finally:
        worker.request_stop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(60):
                await asyncio.shield(task)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


async def _back_in_touch(server: FlakyServer, task: asyncio.Task[None], *calls: str) -> None:
    """Wait until the server has answered each of ``calls`` since it came back; a worker that
    died on the way raises what killed it."""
    await async_wait_until(
        lambda: task.done() or set(calls) <= set(server.answered),
        timeout=10,
        message=lambda: f"calls answered since the outage: {server.answered}",
    )
    if task.done():
        task.result()
        raise AssertionError("the worker stopped by itself")


def test_a_worker_started_during_a_day_long_outage_joins_when_the_server_returns(tmp_path):
    async def scenario() -> None:
        server = FlakyServer()
        server.go_down(DAY)
        async with worker_against(server, tmp_path) as task:
            # Switched to maintenance on its own machine while it cannot reach the server.
            write_control(tmp_path, HOST, {"maintenance": True, "comments": "swap disk"})
            task.worker.request_local_maintenance()
            await asyncio.sleep(DAY)
            await _back_in_touch(server, task, "register", "heartbeat", "maintenance", "watch")
            assert [switch.comments for switch in server.maintenance] == ["swap disk"]
            assert task.worker.state() == "maintenance"

            server.change(maintenance=False)  # the operator ends it: work is fetched again
            await _back_in_touch(server, task, "fetch")
            assert task.worker.state() == "idle"
        assert server.refused > 2000  # it kept trying all day

    run_in_virtual_time(scenario())


def test_unreadable_answers_end_no_loop_of_the_worker(tmp_path):
    async def scenario() -> None:
        server = FlakyServer()
        async with worker_against(server, tmp_path) as task:
            await _back_in_touch(server, task, "register", "heartbeat", "watch", "fetch")
            server.garbled = {"heartbeat", "watch", "fetch"}  # e.g. a proxy's error page
            await asyncio.sleep(600)
            assert not task.done()
            server.garbled = set()
            server.answered.clear()
            await _back_in_touch(server, task, "heartbeat", "watch", "fetch")

    run_in_virtual_time(scenario())


async def test_an_unreadable_answer_is_an_outage_so_a_result_is_sent_again():
    async def proxy_page(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>Bad Gateway</html>")

    client = EdgeClient("http://x.test", HOST, "s" * 40, transport=httpx.MockTransport(proxy_page))
    result = ReportedResult(job_id=1, instance_id="a" * 32, attempt=1, state="success")
    try:
        with pytest.raises(ServerUnavailable, match="not the API's"):
            await client.report_results([result])  # before: a ValidationError, result dropped
        with pytest.raises(ServerUnavailable):
            await client.renew_credential()
    finally:
        await client.aclose()
