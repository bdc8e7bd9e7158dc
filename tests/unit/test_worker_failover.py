"""A real EdgeWorker given two replicas (one scripted server behind two hosts, as replicas
share one database): when the one it talks to dies, it goes on with the other without
losing its running jobs, its results or its desired state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from test_worker_agent import HOST, SECRET, _assignment

from edgefleet.worker.agent import EdgeWorker, WorkerConfig
from edgefleet.worker.client import EdgeClient
from support import JobRecorder, ScriptedEdgeServer, async_wait_until

#: What they check does not depend on the database.
pytestmark = pytest.mark.same_on_every_backend

A, B = "a.test", "b.test"


class Replicas:
    """Routes ``http://a.test`` and ``http://b.test`` to one ``ScriptedEdgeServer``.

    A host in ``down`` refuses connections, and a request it held when it went down (a
    long-poll) ends with the connection closed. A host in ``failing`` answers 503. While
    ``hold_watches`` names a host, it holds long-polls open without ever answering.
    """

    def __init__(self, fake: ScriptedEdgeServer) -> None:
        self.fake = fake
        self.down: set[str] = set()
        self.failing: set[str] = set()
        self.hold_watches: str | None = None
        self.held = 0
        #: (host, call) of every request answered.
        self.served: list[tuple[str, str]] = []

    def calls(self, host: str, call: str) -> int:
        return self.served.count((host, call))

    async def handler(self, request: httpx.Request) -> httpx.Response:
        host, call = request.url.host, request.url.path.rsplit("/", 1)[-1]
        if host in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if call == "watch" and host == self.hold_watches:
            self.held += 1
            await asyncio.Event().wait()  # until the worker gives up on it
        if host in self.failing:
            return httpx.Response(503)
        response = await self.fake.handler(request)
        if host in self.down:
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        self.served.append((host, call))
        return response


@contextlib.asynccontextmanager
async def worker_on(
    replicas: Replicas, home: Path, heartbeat_interval: float
) -> AsyncIterator[EdgeWorker]:
    config = WorkerConfig(
        hostname=HOST,
        concurrency=2,
        queues=["default"],
        home=home,
        api_url=f"http://{A},http://{B}",
        heartbeat_interval=heartbeat_interval,
        poll_interval=0.05,
        watch_timeout=1.0,
    )
    client = EdgeClient(config.api_url, HOST, SECRET, httpx.MockTransport(replicas.handler))
    worker = EdgeWorker(config, client)
    task = asyncio.create_task(worker.run())
    try:
        await async_wait_until(lambda: worker.desired is not None or task.done(), timeout=10)
        if task.done():
            task.result()
        yield worker
    finally:
        worker.request_stop()
        worker.request_stop()  # kill what still runs: the test is over
        async with asyncio.timeout(15):
            await task
        await client.aclose()


@pytest.fixture
def recorder(tmp_path: Path) -> JobRecorder:
    return JobRecorder(tmp_path / "records.jsonl")


async def test_a_worker_whose_server_dies_goes_on_with_the_other(tmp_path, recorder):
    fake = ScriptedEdgeServer(HOST, concurrency=2)
    fake.fetch_answers = [([_assignment(1, recorder.command(3.0))], {})]
    replicas = Replicas(fake)
    # Heartbeats every 60 s: one that reaches b while the job runs was sent for the move.
    async with worker_on(replicas, tmp_path, heartbeat_interval=60.0) as worker:
        await async_wait_until(lambda: recorder.running(), timeout=10)
        assert worker.client.api_url == f"http://{A}"

        replicas.down.add(A)  # killed: its long-poll breaks, nothing reaches it any more
        beats_on_b = await async_wait_until(
            lambda: replicas.calls(B, "heartbeat") and fake.heartbeats, timeout=10
        )
        assert beats_on_b[-1].running_jobs == [1], "not announced to b while the job ran"
        assert worker.client.api_url == f"http://{B}"

        await async_wait_until(lambda: 1 in fake.results, timeout=20)
        assert replicas.calls(B, "results") >= 1
        assert fake.results[1].state == "success"

        # Control changes and new work now come through b.
        fake.fetch_answers = [([_assignment(2, recorder.command(0.0))], {})]
        fake.change(concurrency=3, concurrency_source="operator")
        await async_wait_until(lambda: 2 in fake.results, timeout=20)
        await async_wait_until(lambda: worker.limiter.limit == 3, timeout=10)
        await async_wait_until(
            lambda: any(b.applied_version == fake.desired["version"] for b in fake.heartbeats),
            timeout=10,
        )

    assert len(fake.registrations) == 1  # the same instance throughout: nothing re-queued
    assert sorted(r.job for r in recorder.runs()) == [1, 2]  # each ran once
    assert replicas.calls(A, "results") == 0


async def test_a_long_poll_held_on_a_server_left_behind_is_dropped(tmp_path):
    """A hangs the long-poll while its other calls fail (a server in trouble): once a
    heartbeat moves the worker to b, the long-poll goes there too instead of waiting on a."""
    fake = ScriptedEdgeServer(HOST, concurrency=1)
    replicas = Replicas(fake)
    async with worker_on(replicas, tmp_path, heartbeat_interval=0.2) as worker:
        await async_wait_until(lambda: replicas.calls(A, "watch"), timeout=10)
        replicas.hold_watches = A
        await async_wait_until(lambda: replicas.held, timeout=10)
        replicas.failing.add(A)
        await async_wait_until(lambda: replicas.calls(B, "watch"), timeout=10)
        assert worker.client.api_url == f"http://{B}"
