"""Cross-replica wake-ups over PostgreSQL LISTEN/NOTIFY.

Every replica listens on one channel; a replica that changes a worker or queues a job sends
``NOTIFY`` so the replica holding that worker's long-poll answers it at once.
"""

from __future__ import annotations

import asyncio
import json
import logging

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from edgefleet.server.notifier import Notifier

log = logging.getLogger(__name__)

CHANNEL = "edgefleet_wakeup"


def libpq_dsn(engine: Engine) -> str:
    url = make_url(engine.url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PostgresBridge:
    def __init__(self, engine: Engine, notifier: Notifier) -> None:
        self._engine = engine
        self._notifier = notifier
        self._task: asyncio.Task[None] | None = None

    def publish(self, kind: str, key: str, slots: int, count: int | None) -> None:
        """Called after the change committed, from a route's worker thread."""
        payload = json.dumps([kind, key, slots, count])
        try:
            with self._engine.connect() as connection:
                connection.execute(
                    text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": CHANNEL, "payload": payload},
                )
                connection.commit()
        except Exception:  # a lost wake-up only delays delivery until the next re-check
            log.warning("could not publish wake-up %s", payload, exc_info=True)

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
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    delay = 0.5
                    # Whatever was announced while not listening is lost: look again.
                    self._notifier.wake_everyone()
                    async for note in conn.notifies():
                        self._deliver(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning(
                    "wake-up listener lost its connection; retrying in %.1fs", delay, exc_info=True
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _deliver(self, payload: str) -> None:
        try:
            kind, key, slots, count = json.loads(payload)
        except (ValueError, TypeError):
            log.warning("ignored a malformed wake-up %r", payload)
            return
        self._notifier.wake(kind, key, slots, count)
