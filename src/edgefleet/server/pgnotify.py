"""Cross-replica wake-ups over PostgreSQL LISTEN/NOTIFY.

Every replica listens on one channel; a replica that changes a worker or queues a job sends
``NOTIFY`` so the replica holding that worker's long-poll answers it at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from edgefleet.backoff import Backoff
from edgefleet.server.notifier import Notifier, WakeKind, WakeUp

log = logging.getLogger(__name__)

CHANNEL = "edgefleet_wakeup"
#: Bytes of one NOTIFY payload we send, under PostgreSQL's limit of 8000.
PAYLOAD_LIMIT = 7000


def libpq_dsn(engine: Engine) -> str:
    url = make_url(engine.url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PostgresBridge:
    def __init__(self, engine: Engine, notifier: Notifier) -> None:
        self._engine = engine
        self._notifier = notifier
        self._task: asyncio.Task[None] | None = None
        #: Names this replica in what it sends: it woke its own long-polls already, and
        #: waking them again on its own NOTIFY would spend a job's wake-up twice.
        self.origin = uuid.uuid4().hex[:12]

    def publish(self, wakeups: list[WakeUp]) -> None:
        """Called after the change committed, from a route's worker thread: one round trip,
        however many workers a change touched."""
        try:
            with self._engine.connect() as connection:
                for payload in payloads(self.origin, wakeups):
                    connection.execute(
                        text("SELECT pg_notify(:channel, :payload)"),
                        {"channel": CHANNEL, "payload": payload},
                    )
                connection.commit()
        except Exception:  # a lost wake-up only delays delivery until the next re-check
            log.warning("could not publish %d wake-ups", len(wakeups), exc_info=True)

    def start(self) -> None:
        self._notifier.publish = self.publish
        self._task = asyncio.create_task(self._listen_forever())

    async def stop(self) -> None:
        self._notifier.publish = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _listen_forever(self) -> None:
        dsn = libpq_dsn(self._engine)
        backoff = Backoff(base=0.5, cap=10.0)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    backoff.reset()
                    # Whatever was announced while not listening is lost: look again.
                    self._notifier.wake_everyone()
                    async for note in conn.notifies():
                        self._deliver(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = backoff.next()
                log.warning(
                    "wake-up listener lost its connection; retrying in %.1fs", delay, exc_info=True
                )
                await asyncio.sleep(delay)

    def _deliver(self, payload: str) -> None:
        try:
            origin, items = json.loads(payload)
            wakeups = [
                WakeUp(WakeKind(kind), key, slots, count) for kind, key, slots, count in items
            ]
        except (ValueError, TypeError):
            log.warning("ignored a malformed wake-up %r", payload[:200])
            return
        if origin != self.origin:
            self._notifier.wake(wakeups)


def payloads(origin: str, wakeups: list[WakeUp]) -> Iterator[str]:
    """``[origin, [wake-up, ...]]`` as JSON, each small enough for one NOTIFY (PostgreSQL
    takes 8000 bytes at most)."""
    empty = len(json.dumps([origin, []]))
    batch: list[WakeUp] = []
    size = empty
    for wakeup in wakeups:
        item = len(json.dumps(wakeup)) + 2  # with the ", " that joins it
        if batch and size + item > PAYLOAD_LIMIT:
            yield json.dumps([origin, batch])
            batch, size = [], empty
        batch.append(wakeup)
        size += item
    if batch:
        yield json.dumps([origin, batch])
