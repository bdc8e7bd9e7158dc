"""The outbox: in order per job attempt, retried until the server answers, replayed after a
restart, and a refusal is final. The messages go to the scripted server's ``deliver``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edgefleet.worker.outbox import Delivery, Outbox
from edgefleet.worker.spool import Entry, Kind, Spool
from support import ScriptedEdgeServer, async_wait_until

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it


def make(tmp_path: Path, server: ScriptedEdgeServer, **kwargs) -> Outbox:
    return Outbox(
        Spool(tmp_path, "w1"), server.deliver, backoff_base=0.01, backoff_cap=0.05, **kwargs
    )


async def test_messages_of_one_attempt_arrive_in_order(tmp_path: Path) -> None:
    server = ScriptedEdgeServer("w1")
    outbox = make(tmp_path, server)
    futures = [outbox.add(Kind.LOG, 1, 1, {"seq": n}) for n in range(5)]
    futures.append(outbox.add(Kind.RESULT, 1, 1, {"state": "success"}))
    futures.append(outbox.add(Kind.RESULT, 2, 1, {"state": "failed"}))
    assert await asyncio.gather(*futures) == [Delivery.DELIVERED] * 7
    job1 = [(kind, body) for kind, job, _, body in server.received if job == 1]
    logs = [(Kind.LOG, {"seq": n}) for n in range(5)]
    assert job1 == [*logs, (Kind.RESULT, {"state": "success"})]
    assert await outbox.wait_empty(1)
    assert len(outbox.spool) == 0 and Spool(tmp_path, "w1").load() == []


async def test_an_outage_delays_delivery_but_loses_nothing(tmp_path: Path) -> None:
    server = ScriptedEdgeServer("w1")
    server.down = True
    outbox = make(tmp_path, server)
    result = outbox.add(Kind.RESULT, 5, 2, {"state": "success"})
    await async_wait_until(lambda: server.calls >= 3, timeout=5)
    assert not result.done()
    assert not await outbox.wait_empty(0.05)
    server.down = False
    outbox.kick()
    assert await asyncio.wait_for(result, 5) == Delivery.DELIVERED
    assert server.received == [(Kind.RESULT, 5, 2, {"state": "success"})]


async def test_a_refusal_is_final_and_a_413_stops_that_attempts_logs(tmp_path: Path) -> None:
    server = ScriptedEdgeServer("w1")
    server.refuse_messages[(Kind.LOG, 3)] = 413
    refused: list[tuple[int, int]] = []
    outbox = make(
        tmp_path, server, on_refused=lambda e, exc: refused.append((e.job_id, exc.status_code))
    )
    first = outbox.add(Kind.LOG, 3, 1, {"seq": 0})
    second = outbox.add(Kind.LOG, 3, 1, {"seq": 1})
    result = outbox.add(Kind.RESULT, 3, 1, {"state": "success"})
    assert await asyncio.gather(first, second, result) == [
        Delivery.REFUSED,
        Delivery.REFUSED,
        Delivery.DELIVERED,
    ]
    assert refused == [(3, 413)]  # the second chunk was dropped without asking again
    assert server.received == [(Kind.RESULT, 3, 1, {"state": "success"})]


async def test_what_a_previous_process_left_is_replayed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "w1")
    spool.put(Kind.LOG, 9, 1, {"seq": 0})
    spool.put(Kind.RESULT, 9, 1, {"state": "failed"})
    server = ScriptedEdgeServer("w1")
    outbox = make(tmp_path, server)
    assert outbox.replay() == 2
    assert outbox.pending_jobs() == {9}
    assert await outbox.wait_empty(5)
    assert [m[0] for m in server.received] == [Kind.LOG, Kind.RESULT]


async def test_close_keeps_undelivered_messages_for_the_next_start(tmp_path: Path) -> None:
    server = ScriptedEdgeServer("w1")
    server.down = True
    outbox = make(tmp_path, server)
    future = outbox.add(Kind.RESULT, 4, 1, {"state": "success"})
    await async_wait_until(lambda: server.calls >= 1, timeout=5)
    await outbox.close()
    assert future.cancelled()
    assert [e.job_id for e in Spool(tmp_path, "w1").load()] == [4]


async def test_a_message_that_cannot_be_sent_is_dropped_not_retried(tmp_path: Path) -> None:
    calls = 0

    async def broken(entry: Entry) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("corrupt body")

    outbox = Outbox(Spool(tmp_path, "w1"), broken)
    assert await outbox.add(Kind.RESULT, 1, 1, {}) == Delivery.REFUSED
    assert calls == 1
