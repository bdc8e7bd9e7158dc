"""Cuts a job's output into ordered chunks while it runs and hands them to the outbox.

The sink is synchronous and local (the spool on disk), so a slow or absent server never
blocks the job's output pipe; the outbox ships the chunks when it can. Each chunk carries a
sequence number, so a push retried after a lost answer is stored once.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
from collections.abc import Callable

from edgefleet.aio import wait_event

log = logging.getLogger(__name__)

#: Characters per chunk at most (the wire limit is twice that). Output is cut at this size,
#: so the largest chunk's request body (every character escaped as ``\uXXXX``: 6 bytes) is
#: 1.5 MiB, under the smallest request-body cap a server accepts (``MIN_BODY_BYTES``).
MAX_CHUNK_CHARS = 256 * 1024

#: Takes (seq, text); returns False if the chunk could not be kept (the spool is full).
Sink = Callable[[int, str], bool]


def _storable(text: str) -> str:
    """NUL bytes shown as U+FFFD, like undecodable bytes: no text column stores a NUL, and
    the server refuses a chunk that holds one."""
    return text.replace("\x00", "\ufffd")


class LogStreamer:
    """Buffers output and emits a chunk every ``interval`` seconds (sooner when a chunk's
    worth is waiting). ``stop()`` discards all further output, for a job whose log the
    server will take no more of."""

    def __init__(self, sink: Sink, interval: float = 1.0, job_id: int | None = None) -> None:
        self._sink = sink
        self._interval = interval
        self._job_id = job_id
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer: list[str] = []
        self._buffered = 0
        self._seq = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._stopped: str | None = None
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    def stop(self, reason: str) -> None:
        if self._stopped is None:
            log.warning("job %s: no more output is sent: %s", self._job_id, reason)
        self._stopped = reason
        self._buffer, self._buffered = [], 0

    def write(self, data: bytes) -> None:
        text = _storable(self._decoder.decode(data))
        if not text or self._stopped is not None:
            return
        self._buffer.append(text)
        self._buffered += len(text)
        if self._buffered >= MAX_CHUNK_CHARS:
            self._flush(full_only=True)

    async def close(self) -> None:
        """Stop the periodic flushes and emit what is left (and a note of anything dropped)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        tail = _storable(self._decoder.decode(b"", final=True))
        if tail and self._stopped is None:
            self._buffer.append(tail)
        self._flush()
        if self.dropped and self._stopped is None:
            self._emit(
                f"\n[edgefleet: {self.dropped} characters of output were dropped: the worker's "
                "spool was full while the server could not be reached]\n"
            )

    async def _loop(self) -> None:
        while not self._closing:
            await wait_event(self._wake, self._interval)
            self._wake.clear()
            self._flush()

    def _flush(self, full_only: bool = False) -> None:
        if not self._buffer:
            return
        text = "".join(self._buffer)
        self._buffer, self._buffered = [], 0
        while text:
            if full_only and len(text) < MAX_CHUNK_CHARS:
                self._buffer, self._buffered = [text], len(text)
                return
            chunk, text = text[:MAX_CHUNK_CHARS], text[MAX_CHUNK_CHARS:]
            self._emit(chunk)

    def _emit(self, chunk: str) -> None:
        if self._stopped is not None:
            return
        if self._sink(self._seq, chunk):
            self._seq += 1
        else:
            self.dropped += len(chunk)
