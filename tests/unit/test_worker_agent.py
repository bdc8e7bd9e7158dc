"""The worker agent's scheduling against a scripted server (``support.edge_server``).

The worker is the real EdgeWorker running real subprocess jobs; only the server is scripted.
Every request the worker sends is validated against the wire contract on arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgefleet.worker.agent import EdgeWorker, WorkerConfig
from edgefleet.worker.client import EdgeClient
from support import JobRecorder, ScriptedEdgeServer, async_wait_until, max_overlap

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

HOST = "unit-edge"
SECRET = "s" * 40


def _assignment(job_id: int, command: list[str]) -> dict:
    return {"id": job_id, "attempt": 1, "command": command, "queue": "default", "slots": 1}


@contextlib.asynccontextmanager
async def running_worker(
    fake: ScriptedEdgeServer,
    home: Path,
    concurrency: int,
    long_poll: bool = False,
    heartbeat_interval: float = 0.2,
) -> AsyncIterator[EdgeWorker]:
    """Run a real EdgeWorker against ``fake``; stop it (draining its jobs) on exit."""
    config = WorkerConfig(
        hostname=HOST,
        concurrency=concurrency,
        queues=["default"],
        home=home,
        api_url="http://edgefleet.test",
        heartbeat_interval=heartbeat_interval,
        poll_interval=0.05,
        watch_timeout=1.0,
        long_poll=long_poll,
    )
    client = EdgeClient(config.api_url, HOST, SECRET, transport=fake.transport())
    worker = EdgeWorker(config, client)
    task = asyncio.create_task(worker.run())
    try:
        await async_wait_until(lambda: worker.desired is not None or task.done(), timeout=10)
        if task.done():
            task.result()  # raise what went wrong
        yield worker
    finally:
        worker.request_stop()
        try:
            async with asyncio.timeout(15):
                await asyncio.shield(task)
        except TimeoutError:
            worker.request_stop()  # a second stop kills the jobs
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


@pytest.fixture
def recorder(tmp_path: Path) -> JobRecorder:
    return JobRecorder(tmp_path / "records.jsonl")


async def test_jobs_beyond_the_free_slots_are_handed_back(tmp_path, recorder):
    fake = ScriptedEdgeServer(HOST, concurrency=2)
    fake.fetch_answers = [([_assignment(i, recorder.command(1.0)) for i in (1, 2, 3)], {})]

    async with running_worker(fake, tmp_path, concurrency=2):
        await async_wait_until(lambda: len(fake.results) == 2, timeout=20)

    assert fake.fetches[0].free_slots == 2
    assert [(job_id, release.attempt) for job_id, release in fake.releases] == [(3, 1)]
    assert sorted(fake.results) == [1, 2]
    assert all(r.state == "success" and r.exit_code == 0 for r in fake.results.values())
    runs = recorder.runs()
    assert sorted(r.job for r in runs) == [1, 2]  # job 3 never started
    assert max_overlap(runs) == 2


async def test_a_limit_lowered_in_the_fetch_answer_applies_to_that_answer(
    tmp_path, recorder, caplog
):
    caplog.set_level(logging.INFO, logger="edgefleet.worker.agent")
    fake = ScriptedEdgeServer(HOST, concurrency=3)
    jobs = [_assignment(i, recorder.command(0.3)) for i in (10, 11)]
    fake.fetch_answers = [(jobs, {"concurrency": 1, "concurrency_source": "operator"})]

    async with running_worker(fake, tmp_path, concurrency=3) as worker:
        await async_wait_until(lambda: 10 in fake.results, timeout=20)
        acked = await async_wait_until(
            lambda: [b for b in fake.heartbeats if b.applied_version == 2], timeout=10
        )
        assert worker.limiter.limit == 1

    assert [job_id for job_id, _ in fake.releases] == [11]
    assert [r.job for r in recorder.runs()] == [10]
    assert acked[0].applied_concurrency == 1
    assert "concurrency updated from 3 to 1 by remote request (operator)" in caplog.text


async def test_a_change_arriving_by_long_poll_is_applied_and_acknowledged_without_restart(
    tmp_path, recorder
):
    """Acknowledged by the next long-poll, with no heartbeat of its own (a heartbeat comes
    every 60 s here)."""
    fake = ScriptedEdgeServer(HOST, concurrency=1)
    long_poll = {"long_poll": True, "heartbeat_interval": 60.0}
    async with running_worker(fake, tmp_path, concurrency=1, **long_poll) as worker:
        assert worker.limiter.limit == 1
        beats = len(await async_wait_until(lambda: fake.heartbeats, timeout=10))
        fake.change(concurrency=4, concurrency_source="operator")
        await async_wait_until(lambda: (2, 4, "idle") in fake.watch_acks, timeout=10)
        assert worker.limiter.limit == 4
        assert len(fake.heartbeats) == beats  # the state did not change: no heartbeat

        # The new limit is what it now fetches for: four jobs at once.
        fetches_before = len(fake.fetches)
        fake.fetch_answers = [([_assignment(i, recorder.command(1.0)) for i in range(20, 24)], {})]
        fake.change()  # wake the long-poll, as a queued job would
        await async_wait_until(lambda: len(fake.results) == 4, timeout=20)
        assert [f.free_slots for f in fake.fetches[fetches_before:]][0] == 4

    assert len(fake.registrations) == 1  # never re-registered, never restarted
    assert max_overlap(recorder.runs()) == 4
    assert fake.releases == []


async def test_a_change_learnt_from_a_fetch_is_acknowledged_by_the_next_long_poll(tmp_path):
    fake = ScriptedEdgeServer(HOST, concurrency=2)
    fake.fetch_answers = [([], {"concurrency": 1, "concurrency_source": "operator"})]
    long_poll = {"long_poll": True, "heartbeat_interval": 60.0}
    async with running_worker(fake, tmp_path, concurrency=2, **long_poll) as worker:
        await async_wait_until(lambda: (2, 1, "idle") in fake.watch_acks, timeout=10)
        assert worker.limiter.limit == 1


async def test_a_long_poll_acknowledges_maintenance_with_the_state_it_brings(tmp_path):
    """``--wait`` returns on the acknowledgement: it must not show a worker in maintenance
    as still idle."""
    fake = ScriptedEdgeServer(HOST, concurrency=2)
    long_poll = {"long_poll": True, "heartbeat_interval": 60.0}
    async with running_worker(fake, tmp_path, concurrency=2, **long_poll):
        await async_wait_until(lambda: fake.watch_acks, timeout=10)
        fake.change(maintenance=True, maintenance_comment="firmware")
        await async_wait_until(lambda: (2, 2, "maintenance") in fake.watch_acks, timeout=10)
    assert not [ack for ack in fake.watch_acks if ack[0] == 2 and ack[2] != "maintenance"]


async def test_without_long_polls_a_change_is_acknowledged_by_a_heartbeat_at_once(tmp_path):
    fake = ScriptedEdgeServer(HOST, concurrency=2)
    fake.fetch_answers = [([], {"concurrency": 3, "concurrency_source": "operator"})]
    async with running_worker(fake, tmp_path, concurrency=2, heartbeat_interval=60.0):
        acked = await async_wait_until(
            lambda: [b for b in fake.heartbeats if b.applied_version == 2], timeout=10
        )
    assert acked[0].applied_concurrency == 3
    assert fake.watch_acks == []


async def test_job_outcome_environment_and_output_are_reported(tmp_path, recorder):
    fake = ScriptedEdgeServer(HOST, concurrency=3)
    code = "import os, sys; print('out', os.environ['EDGEFLEET_JOB_ID']); sys.exit(3)"
    fake.fetch_answers = [
        (
            [
                _assignment(31, [sys.executable, "-I", "-c", code]),
                _assignment(32, ["/nonexistent/edgefleet-command"]),
                _assignment(33, recorder.command(0.0)),
            ],
            {},
        )
    ]
    async with running_worker(fake, tmp_path, concurrency=3):
        await async_wait_until(lambda: len(fake.results) == 3, timeout=20)
        await async_wait_until(lambda: "out 31" in fake.log_text(31), timeout=10)

    assert (fake.results[31].state, fake.results[31].exit_code) == ("failed", 3)
    assert (fake.results[32].state, fake.results[32].exit_code) == ("failed", None)
    assert "/nonexistent/edgefleet-command" in fake.results[32].reason
    assert (fake.results[33].state, fake.results[33].exit_code) == ("success", 0)
    (run,) = recorder.runs()
    assert (run.job, run.attempt, run.worker) == (33, 1, HOST)


async def test_stop_lets_running_jobs_finish_and_reports_stopped(tmp_path, recorder):
    fake = ScriptedEdgeServer(HOST, concurrency=1)
    fake.fetch_answers = [([_assignment(41, recorder.command(0.5))], {})]
    async with running_worker(fake, tmp_path, concurrency=1):
        await async_wait_until(lambda: recorder.runs(), timeout=10)
    # leaving the block stopped the worker: the job ran to its end, and it said goodbye
    assert fake.results[41].state == "success"
    assert recorder.runs()[0].end is not None
    assert fake.heartbeats[-1].state == "stopped"
    state = json.loads((tmp_path / "workers" / f"{HOST}.json").read_text())
    assert state["state"] == "stopped"


async def test_a_stop_ends_registration_retries_while_the_server_is_unreachable(tmp_path):
    fake = ScriptedEdgeServer(HOST)
    fake.down = True
    attempts = fake.requests
    config = WorkerConfig(
        hostname=HOST, concurrency=1, queues=["default"], home=tmp_path, api_url="http://x.test"
    )
    client = EdgeClient(config.api_url, HOST, SECRET, transport=fake.transport())
    worker = EdgeWorker(config, client)
    task = asyncio.create_task(worker.run())
    try:
        await async_wait_until(lambda: len(attempts) >= 3, timeout=30)
        worker.request_stop()
        async with asyncio.timeout(10):
            await task  # before the fix: retried for ever, deaf to the stop
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
    assert worker.desired is None
    assert all(path.endswith("/register") or path.endswith("/heartbeat") for path in fake.paths())


@pytest.mark.parametrize("status", [404, 409])
async def test_a_worker_the_server_no_longer_knows_registers_again(tmp_path, status):
    """404 (deleted) or 409 (replaced) to a heartbeat: register again, replacing itself."""
    fake = ScriptedEdgeServer(HOST, concurrency=1)
    async with running_worker(fake, tmp_path, concurrency=1) as worker:
        fake.refusals["heartbeat"] = [status]
        again = await async_wait_until(lambda: fake.registrations[1:], timeout=10)
    assert again[0].replaces == worker.instance_id


async def test_other_refusals_of_a_heartbeat_do_not_register_again(tmp_path):
    fake = ScriptedEdgeServer(HOST, concurrency=1)
    async with running_worker(fake, tmp_path, concurrency=1):
        fake.refusals["heartbeat"] = [403, 400]
        await async_wait_until(lambda: not fake.refusals["heartbeat"], timeout=10)
        beats = len(fake.heartbeats)
        await async_wait_until(lambda: len(fake.heartbeats) > beats, timeout=10)
    assert len(fake.registrations) == 1
