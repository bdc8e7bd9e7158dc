"""Who a wake-up reaches: the worker's own long-poll, one idle long-poll per new job, and
every long-poll after a replica may have missed wake-ups; and how they travel between
replicas."""

from __future__ import annotations

import asyncio
import json
from contextlib import ExitStack

import pytest

from edgefleet.server.events import JobsQueued, WorkerChanged
from edgefleet.server.notifier import Notifier, WakeKind, WakeUp
from edgefleet.server.pgnotify import PAYLOAD_LIMIT, PostgresBridge, payloads

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it


async def settle() -> None:
    """Let the wake-ups handed to the loop run."""
    for _ in range(3):
        await asyncio.sleep(0)


def woken(waiters) -> list[str]:
    return sorted(w.hostname for w in waiters if w.event.is_set())


def test_a_job_wakes_as_many_idle_long_polls_as_it_needs_with_room_for_it():
    async def scenario() -> None:
        notifier = Notifier()
        notifier.bind(asyncio.get_running_loop())
        with ExitStack() as stack:
            waiters = []
            for name, free in [("a", 1), ("b", 2), ("c", 2), ("busy", 0)]:
                waiter = stack.enter_context(notifier.subscribe(name, free))
                notifier.follow(waiter, ["q", "other"])
                waiters.append(waiter)

            notifier.announce([JobsQueued("q", slots=2, count=1)])
            await settle()
            first = woken(waiters)
            assert first in (["b"], ["c"])

            notifier.announce(
                [JobsQueued("q", slots=2, count=1)]
            )  # the next one goes to someone else
            await settle()
            assert woken(waiters) == ["b", "c"]

            notifier.announce([JobsQueued("q", slots=1)])  # count None: all with room
            await settle()
            assert woken(waiters) == ["a", "b", "c"]

            notifier.announce([WorkerChanged("busy")])
            await settle()
            assert woken(waiters) == ["a", "b", "busy", "c"]
        assert notifier._waiters[WakeKind.WORKER] == {} and notifier._waiters[WakeKind.QUEUE] == {}

    asyncio.run(scenario())


def test_published_wake_ups_fit_notify_payloads_and_survive_the_trip():
    wakeups = [WakeUp(WakeKind.WORKER, f"site-a-worker-{i:05d}", 0, None) for i in range(1000)]
    wakeups.append(WakeUp(WakeKind.QUEUE, "default", 2, 1))
    sent = list(payloads("replica-a", wakeups))
    assert len(sent) > 1
    assert all(len(payload.encode()) <= PAYLOAD_LIMIT for payload in sent)
    assert {json.loads(payload)[0] for payload in sent} == {"replica-a"}
    received = [tuple(item) for payload in sent for item in json.loads(payload)[1]]
    assert received == wakeups


def test_a_replica_ignores_its_own_wake_ups():
    """It woke its own long-polls when it announced; its NOTIFY is for the others."""

    async def scenario() -> None:
        notifier = Notifier()
        notifier.bind(asyncio.get_running_loop())
        bridge = PostgresBridge.__new__(PostgresBridge)  # no engine needed to deliver
        bridge._notifier, bridge.origin = notifier, "me"
        with notifier.subscribe("a", 1) as waiter:
            bridge._deliver(next(payloads("me", [WakeUp(WakeKind.WORKER, "a", 0, None)])))
            await settle()
            assert not waiter.event.is_set()
            bridge._deliver(next(payloads("other", [WakeUp(WakeKind.WORKER, "a", 0, None)])))
            await settle()
            assert waiter.event.is_set()

    asyncio.run(scenario())


def test_a_newer_long_poll_of_a_worker_replaces_the_older_one():
    """The older request was given up by the worker: a job's wake-up must reach the new one."""

    async def scenario() -> None:
        notifier = Notifier()
        notifier.bind(asyncio.get_running_loop())
        with notifier.subscribe("a", 1) as older:
            notifier.follow(older, ["q"])
            with notifier.subscribe("a", 2) as newer:
                notifier.follow(newer, ["q"])
                notifier.follow(older, ["q"])  # a look that ends after the takeover
                assert older.replaced and older.event.is_set()
                notifier.announce([JobsQueued("q", slots=1, count=1)])
                await settle()
                assert newer.event.is_set()
        assert notifier._waiters[WakeKind.WORKER] == {} and notifier._waiters[WakeKind.QUEUE] == {}

    asyncio.run(scenario())
