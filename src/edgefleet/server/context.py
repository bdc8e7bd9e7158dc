"""What every request handler needs, built once per app from settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from edgefleet.db.session import Sessions
from edgefleet.server.notifier import Notifier
from edgefleet.settings import Settings

#: Seconds between a held long-poll's own looks at PostgreSQL (see ``watch_recheck``).
POSTGRES_RECHECK = 15.0


@dataclass
class ServerContext:
    settings: Settings
    engine: Engine
    db: Sessions
    notifier: Notifier
    secret: str

    @property
    def watch_recheck(self) -> float | None:
        """How often a held long-poll re-reads the database; None for never.

        One server process on SQLite makes every change itself and wakes its long-polls
        directly. Replicas sharing PostgreSQL hear of each other's changes by NOTIFY, which a
        dropped connection can lose, so there a long-poll also looks again now and then.
        """
        if self.settings.watch_recheck is not None:
            return self.settings.watch_recheck
        return POSTGRES_RECHECK if self.engine.dialect.name == "postgresql" else None
