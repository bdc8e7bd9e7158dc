"""Group commit: what arrives while one group is being written goes together in the next.

The server writes heartbeats and results this way (one trip to a database thread and one
transaction per group instead of per request), and a worker sends its results this way (one
request for the results that are ready together). An idle writer writes a lone item at once;
each item still gets its own answer, or its own error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, NamedTuple, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")

#: Items one write takes at most; the rest wait for the next.
MAX_GROUP = 500


class Waiting(NamedTuple, Generic[Item, Answer]):
    """An item submitted and not written yet, with where its answer goes."""

    item: Item
    answer: asyncio.Future[Answer]


class GroupWriter(Generic[Item, Answer]):
    """``await submit(item)`` awaits ``write([item, ...])`` with whatever else was submitted
    meanwhile, one write at a time. ``write`` answers each item in order, with a result or
    the exception that item's caller should get; if it raises, every item of the group does.

    Unless ``alone(exc)`` says the exception is one item's fault (a value the database
    refused, say): then each item of the group is written again on its own, so a bad item
    fails only its own caller, never the others that happened to share its group.
    """

    def __init__(
        self,
        write: Callable[[list[Item]], Awaitable[Sequence[Answer | Exception]]],
        max_group: int = MAX_GROUP,
        alone: Callable[[Exception], bool] | None = None,
    ) -> None:
        self._write = write
        self._max_group = max_group
        self._alone = alone
        self._pending: list[Waiting[Item, Answer]] = []
        self._writing: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Answer:
        (answer,) = await self.submit_many([item])
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def submit_many(self, items: list[Item]) -> list[Answer | Exception]:
        """Several items of one caller, answered each on its own (errors are returned)."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self._pending.extend(map(Waiting, items, futures))
        if self._writing is None:
            self._writing = asyncio.create_task(self._write_pending())
        # A caller that goes away cancels its futures, never the group's write.
        return list(await asyncio.gather(*futures, return_exceptions=True))

    async def _write_pending(self) -> None:
        group: list[Waiting[Item, Answer]] = []
        try:
            while self._pending:
                group = self._pending[: self._max_group]
                del self._pending[: self._max_group]
                items = [waiting.item for waiting in group]
                try:
                    answers = await self._write(items)
                except Exception as exc:
                    answers = await self._after_failure(items, exc)
                for waiting, answer in zip(group, answers, strict=True):
                    if waiting.answer.done():  # its caller went away
                        continue
                    if isinstance(answer, Exception):
                        waiting.answer.set_exception(answer)
                    else:
                        waiting.answer.set_result(answer)
        finally:
            self._writing = None
            for waiting in group + self._pending:  # only if cancelled (shutdown)
                waiting.answer.cancel()

    async def _after_failure(
        self, items: list[Item], exc: Exception
    ) -> Sequence[Answer | Exception]:
        if len(items) < 2 or self._alone is None or not self._alone(exc):
            return [exc] * len(items)
        answers: list[Answer | Exception] = []
        for item in items:
            try:
                answers.extend(await self._write([item]))
            except Exception as own:
                answers.append(own)
        return answers
