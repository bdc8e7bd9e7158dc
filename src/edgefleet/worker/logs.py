"""Ships a job's output to the server in ordered chunks while the job runs."""

from __future__ import annotations

import asyncio
import codecs
import logging
from collections.abc import Awaitable, Callable

from edgefleet.aio import wait_event
from edgefleet.worker.client import Rejected, ServerUnavailable

log = logging.getLogger(__name__)

MAX_CHUNK_CHARS = 256 * 1024


class LogStreamer:
    """Buffers output and pushes it every ``interval`` seconds (sooner when the buffer fills).

    Chunks carry a sequence number, so a push retried after a lost answer is stored once.
    """

    def __init__(
        self,
        push: Callable[[int, str], Awaitable[None]],
        interval: float = 1.0,
        job_id: int | None = None,
    ) -> None:
        self._push = push
        self._interval = interval
        self._job_id = job_id
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer: list[str] = []
        self._buffered = 0
        self._seq = 0
        self._full = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    def write(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if text:
            self._buffer.append(text)
            self._buffered += len(text)
            if self._buffered >= MAX_CHUNK_CHARS:
                self._full.set()

    async def close(self) -> None:
        """Stop the periodic pushes and send what is left."""
        self._closing = True
        self._full.set()
        if self._task is not None:
            await self._task
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._buffer.append(tail)
        await self._flush()

    async def _loop(self) -> None:
        while not self._closing:
            await wait_event(self._full, self._interval)
            self._full.clear()
            await self._flush()

    async def _flush(self) -> None:
        while self._buffer:
            text = "".join(self._buffer)
            chunk, rest = text[:MAX_CHUNK_CHARS], text[MAX_CHUNK_CHARS:]
            self._buffer = [rest] if rest else []
            self._buffered = len(rest)
            await self._send(self._seq, chunk)
            self._seq += 1

    async def _send(self, seq: int, chunk: str) -> None:
        delay = 0.2
        for _ in range(8):
            try:
                await self._push(seq, chunk)
                return
            except ServerUnavailable as exc:
                log.warning("job %s: log push failed, retrying: %s", self._job_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Rejected as exc:
                log.error("job %s: log chunk %d refused: %s", self._job_id, seq, exc)
                return
        log.error("job %s: log chunk %d dropped after retries", self._job_id, seq)
