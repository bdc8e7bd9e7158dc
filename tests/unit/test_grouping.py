"""Group commit: requests that arrive during a write go together in the next one."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from edgefleet.grouping import GroupWriter

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it


class Recorder:
    """A write that records its groups, answers n -> n * 10 (or an error for negatives), and
    can be held so that requests pile up behind it."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def __call__(self, items: list[int]) -> list[int | Exception]:
        self.groups.append(items)
        self.entered.set()
        self.release.wait(5)
        if 0 in items:
            raise RuntimeError("the database went away")
        return [ValueError(f"bad {n}") if n < 0 else n * 10 for n in items]


@pytest.fixture
def executor():
    with ThreadPoolExecutor(2) as pool:
        yield pool


def in_thread(write: Recorder, executor: ThreadPoolExecutor):
    """The write as the server runs it: blocking, in a thread of its pool."""

    async def run(items: list[int]) -> list[int | Exception]:
        return await asyncio.get_running_loop().run_in_executor(executor, write, items)

    return run


async def test_requests_during_a_write_share_the_next_one(executor):
    write = Recorder()
    writer = GroupWriter(in_thread(write, executor))
    write.release.clear()
    first = asyncio.create_task(writer.submit(1))
    await asyncio.to_thread(write.entered.wait, 5)
    later = [asyncio.create_task(writer.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0.05)
    write.release.set()
    assert await asyncio.gather(first, *later) == [10, 20, 30, 40]
    assert write.groups == [[1], [2, 3, 4]]


async def test_each_request_gets_its_own_error(executor):
    write = Recorder()
    writer = GroupWriter(in_thread(write, executor))
    answers = await writer.submit_many([5, -1, 6])
    assert answers[0] == 50 and answers[2] == 60
    assert isinstance(answers[1], ValueError)
    with pytest.raises(ValueError, match="bad -2"):
        await writer.submit(-2)


async def test_a_failed_write_fails_its_group_only(executor):
    write = Recorder()
    writer = GroupWriter(in_thread(write, executor))
    write.release.clear()
    failing = asyncio.create_task(writer.submit_many([0, 7]))
    await asyncio.to_thread(write.entered.wait, 5)
    after = asyncio.create_task(writer.submit(8))
    await asyncio.sleep(0.05)
    write.release.set()
    assert [type(a) for a in await failing] == [RuntimeError, RuntimeError]
    assert await after == 80


async def test_a_request_that_goes_away_leaves_the_others_answered(executor):
    write = Recorder()
    writer = GroupWriter(in_thread(write, executor), max_group=2)
    write.release.clear()
    gone = asyncio.create_task(writer.submit(1))
    await asyncio.to_thread(write.entered.wait, 5)
    stays = [asyncio.create_task(writer.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0.05)
    gone.cancel()
    write.release.set()
    assert await asyncio.gather(*stays) == [20, 30, 40]
    assert write.groups == [[1], [2, 3], [4]]  # at most max_group per write; 1 was written


async def test_a_bad_item_alone_fails_only_itself_when_its_fault_is_told_apart(executor):
    """``alone``: a group whose write raised for one item's value is written again item by
    item, so the other items of the group are answered as if it had not been there."""

    def write(items: list[int]) -> list[int]:
        if any(n > 2**31 for n in items):
            raise OverflowError("value out of range")
        if 0 in items:
            raise RuntimeError("the database went away")
        return [n * 10 for n in items]

    writer = GroupWriter(in_thread(write, executor), alone=lambda e: isinstance(e, OverflowError))
    answers = await writer.submit_many([1, 2**70, 3])
    assert answers[0] == 10 and answers[2] == 30
    assert isinstance(answers[1], OverflowError)
    # A failure of the database itself still fails the whole group, written once.
    assert [type(a) for a in await writer.submit_many([0, 4])] == [RuntimeError, RuntimeError]
