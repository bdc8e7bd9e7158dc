"""The worker's job handling against a scripted server (httpx.MockTransport): a lost fetch
answer, cancel orders, an outage while results wait, and the spool replayed at start-up."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from edgefleet.contract import FetchRequest, JobResult, LogChunk, ResultBatch
from edgefleet.worker.agent import EdgeWorker, WorkerConfig
from edgefleet.worker.client import EdgeClient
from edgefleet.worker.spool import Kind, Spool
from support import JobRecorder, async_wait_until

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

HOST = "agent-edge"
PREFIX = "/api/v1/edge"


class ScriptedServer:
    """Fetches are idempotent by ``seq`` like the real server's; answers can be lost."""

    def __init__(self) -> None:
        self.queue: list[dict] = []
        self.claims: dict[int, list[dict]] = {}
        self.fetch_seqs: list[int] = []
        self.calls: list[str] = []
        self.results: dict[int, list[JobResult]] = {}
        self.logs: dict[int, list[LogChunk]] = {}
        self.cancel: list[dict] = []
        self.lose_fetch_answers = 0
        self.results_down = False
        #: Job ids of each results request; while ``results_held`` is clear, requests wait.
        self.result_batches: list[list[int]] = []
        self.results_held = asyncio.Event()
        self.results_held.set()

    def contact(self) -> httpx.Response:
        desired = {
            "version": 1,
            "concurrency": 4,
            "concurrency_source": "flag",
            "queues": ["default"],
            "maintenance": False,
            "maintenance_comment": None,
            "shutdown": False,
        }
        return httpx.Response(
            200,
            json={
                "desired": desired,
                "server_time": datetime.now(UTC).isoformat(),
                "cancel": self.cancel,
            },
        )

    async def handler(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.removeprefix(PREFIX).strip("/").split("/")
        action = parts[2]
        self.calls.append(action)
        if action == "results":
            if self.results_down:
                raise httpx.ConnectError("server down")
            batch = ResultBatch.model_validate_json(request.content)
            self.result_batches.append([result.job_id for result in batch.results])
            await self.results_held.wait()
            for result in batch.results:
                self.results.setdefault(result.job_id, []).append(result)
            outcomes = [
                {"job_id": r.job_id, "attempt": r.attempt, "status_code": 204}
                for r in batch.results
            ]
            return httpx.Response(200, json={"outcomes": outcomes})
        if parts[0] == "jobs":
            job_id = int(parts[1])
            if action == "logs":
                self.logs.setdefault(job_id, []).append(
                    LogChunk.model_validate_json(request.content)
                )
            return httpx.Response(204)
        if action == "watch":
            await asyncio.sleep(0.05)
            return self.contact()
        if action == "fetch":
            return self.fetch(FetchRequest.model_validate_json(request.content))
        return self.contact()  # register, heartbeat

    def fetch(self, body: FetchRequest) -> httpx.Response:
        assert body.seq is not None
        self.fetch_seqs.append(body.seq)
        if body.seq not in self.claims:
            self.claims[body.seq] = self.queue[: body.free_slots]
            del self.queue[: body.free_slots]
        if self.lose_fetch_answers:
            self.lose_fetch_answers -= 1
            raise httpx.ReadError("connection reset after the claim")
        return httpx.Response(
            200,
            json={"jobs": self.claims[body.seq], "desired": self.contact().json()["desired"]},
        )


def assignment(job_id: int, command: list[str], attempt: int = 1) -> dict:
    return {"id": job_id, "attempt": attempt, "command": command, "queue": "default", "slots": 1}


@contextlib.asynccontextmanager
async def worker_against(server: ScriptedServer, home: Path) -> AsyncIterator[EdgeWorker]:
    config = WorkerConfig(
        hostname=HOST,
        concurrency=4,
        queues=["default"],
        home=home,
        api_url="http://edgefleet.test",
        heartbeat_interval=0.2,
        poll_interval=0.05,
        long_poll=True,
        watch_timeout=1.0,
        grace_period=5.0,
        report_timeout=1.0,
    )
    client = EdgeClient(
        config.api_url, HOST, "s" * 40, transport=httpx.MockTransport(server.handler)
    )
    worker = EdgeWorker(config, client)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.request_stop()
        try:
            async with asyncio.timeout(20):
                await asyncio.shield(task)
        except TimeoutError:
            worker.request_stop()
            await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


@pytest.fixture
def recorder(tmp_path: Path) -> JobRecorder:
    return JobRecorder(tmp_path / "records.jsonl")


async def test_a_lost_fetch_answer_is_asked_again_and_its_jobs_run_once(tmp_path, recorder):
    server = ScriptedServer()
    server.queue = [assignment(n, recorder.command(0.1)) for n in (1, 2)]
    server.lose_fetch_answers = 3  # the client's own retry, then the agent's
    async with worker_against(server, tmp_path):
        await async_wait_until(lambda: len(server.results) == 2, timeout=20)
    assert server.fetch_seqs[:4] == [1, 1, 1, 1]  # the same fetch until it was answered
    assert sorted(r.job for r in recorder.runs()) == [1, 2]
    assert all(len(results) == 1 for results in server.results.values())


async def test_cancel_orders_stop_the_run_they_name_and_no_newer_one(tmp_path, recorder):
    server = ScriptedServer()
    server.queue = [assignment(5, recorder.command(60.0), attempt=2)]
    async with worker_against(server, tmp_path):
        await async_wait_until(recorder.running, timeout=20)
        server.cancel = [{"id": 5, "attempt": 1, "reason": "stale", "requested": False}]
        await asyncio.sleep(0.6)  # a few heartbeats: an order for an older attempt is ignored
        assert 5 not in server.results
        server.cancel = [{"id": 5, "attempt": 2, "reason": "cancelled by an operator"}]
        await async_wait_until(lambda: 5 in server.results, timeout=20)
    (result,) = server.results[5]
    assert (result.state, result.reason, result.attempt) == (
        "cancelled",
        "cancelled by an operator",
        2,
    )


async def test_results_wait_in_the_spool_while_the_server_is_away(tmp_path, recorder):
    server = ScriptedServer()
    server.results_down = True
    server.queue = [assignment(7, ["sh", "-c", "echo out"])]
    async with worker_against(server, tmp_path):
        spool = tmp_path / "spool" / HOST / "outbox"
        await async_wait_until(lambda: list(spool.glob("*-result-7-1.json")), timeout=20)
        await async_wait_until(lambda: server.calls.count("results") >= 2, timeout=20)
        server.results_down = False
        await async_wait_until(lambda: 7 in server.results, timeout=20)
        await async_wait_until(lambda: not list(spool.glob("*.json")), timeout=20)
    assert len(server.results[7]) == 1
    assert "".join(c.data for c in server.logs[7]) == "out\n"


async def test_a_predecessors_spool_is_delivered_before_registering(tmp_path):
    spool = Spool(tmp_path, HOST)
    spool.put(Kind.LOG, 9, 3, {"attempt": 3, "seq": 0, "data": "before the crash\n"})
    body = {"instance_id": "old", "attempt": 3, "state": "success", "exit_code": 0}
    spool.put(Kind.RESULT, 9, 3, body)
    server = ScriptedServer()
    async with worker_against(server, tmp_path) as worker:
        await async_wait_until(lambda: worker.desired is not None, timeout=20)
    assert server.calls[:3] == ["logs", "results", "register"]
    (result,) = server.results[9]
    assert (result.attempt, result.instance_id) == (3, "old")
    assert Spool(tmp_path, HOST).load() == []


async def test_a_spool_in_the_file_naming_of_older_workers_is_delivered(tmp_path):
    """Files named as every earlier worker named them, written without ``Spool``: the
    message kinds and the (job, attempt) of each are read from the name as before. A
    running marker that is not a record at all does not stop the start."""
    outbox = tmp_path / "spool" / HOST / "outbox"
    outbox.mkdir(parents=True)
    chunk = {"attempt": 3, "seq": 0, "data": "before the crash\n"}
    result = {"instance_id": "old", "attempt": 3, "state": "failed", "exit_code": 2}
    release = {"instance_id": "old", "attempt": 1, "seq": None}
    (outbox / "000000000001-log-9-3.json").write_text(json.dumps(chunk))
    (outbox / "000000000002-result-9-3.json").write_text(json.dumps(result))
    (outbox / "000000000003-release-12-1.json").write_text(json.dumps(release))
    running = tmp_path / "spool" / HOST / "running"
    running.mkdir()
    (running / "11-1.json").write_text("[11, 1]")
    server = ScriptedServer()
    async with worker_against(server, tmp_path) as worker:
        await async_wait_until(lambda: worker.desired is not None, timeout=20)
    # Lanes go side by side; within job 9's, its output before its result.
    assert sorted(server.calls[:3]) == ["logs", "release", "results"]
    assert server.calls.index("logs") < server.calls.index("results")
    assert server.calls[3] == "register"
    assert [c.data for c in server.logs[9]] == ["before the crash\n"]
    (reported,) = server.results[9]
    assert (reported.attempt, reported.state, reported.exit_code) == (3, "failed", 2)
    assert list(outbox.iterdir()) == []
    assert list(running.iterdir()) == []


async def test_results_ready_while_one_is_on_its_way_go_in_the_next_request(tmp_path):
    server = ScriptedServer()
    server.results_held.clear()
    server.queue = [assignment(n, ["true"]) for n in (1, 2, 3)]
    async with worker_against(server, tmp_path):
        spool = tmp_path / "spool" / HOST / "outbox"
        await async_wait_until(lambda: len(list(spool.glob("*-result-*.json"))) == 3, timeout=20)
        server.results_held.set()
        await async_wait_until(lambda: len(server.results) == 3, timeout=20)
    # Results that were ready together, or came while a request waited for the server,
    # shared a request: one per result would make three.
    assert sorted(job for batch in server.result_batches for job in batch) == [1, 2, 3]
    assert len(server.result_batches) < 3, server.result_batches
