"""What every request handler needs, built once per app from settings."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from edgefleet.db.session import Sessions
from edgefleet.errors import EdgefleetError
from edgefleet.grouping import GroupWriter
from edgefleet.server.authn import Authenticator, RateLimiter
from edgefleet.server.events import Outcome
from edgefleet.server.notifier import Notifier
from edgefleet.server.secret_env import EnvSealer
from edgefleet.server.services import dispatch, heartbeats, watch
from edgefleet.server.services.reports import ResultReport
from edgefleet.settings import Settings

#: Seconds between a held long-poll's own looks at PostgreSQL (see ``watch_recheck``).
POSTGRES_RECHECK = 15.0
#: Threads that run the worker API's database calls (see ``ServerContext.run``).
DATABASE_THREADS = 16

P = ParamSpec("P")
T = TypeVar("T")


def refused_value(exc: Exception) -> bool:
    """Whether the database (or its driver) refused a value, rather than failing itself: out
    of a column's range, or text it cannot hold. The contract's bounds keep such values out;
    this is the second line, so one that slips through costs only its own request."""
    if isinstance(exc, DBAPIError):
        return isinstance(exc, DataError | IntegrityError)
    return isinstance(exc, StatementError | ValueError | OverflowError)


@dataclass
class ServerContext:
    settings: Settings
    engine: Engine
    db: Sessions
    notifier: Notifier
    secret: str
    threads: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(DATABASE_THREADS, "edgefleet-db")
    )
    #: Heartbeats and results, written in groups.
    beats: GroupWriter[heartbeats.Beat, heartbeats.BeatAnswer] = field(init=False)
    results: GroupWriter[ResultReport, None] = field(init=False)
    #: Long-polls' looks, read in groups (with the acknowledgements they carry): a change to
    #: the whole fleet wakes them all at once.
    looks: GroupWriter[watch.Ask, watch.Look] = field(init=False)
    authenticator: Authenticator = field(init=False)
    rate_limiter: RateLimiter = field(init=False)
    #: Seals jobs' secret env values for the database, opens them for the claiming worker.
    sealer: EnvSealer = field(init=False)

    def __post_init__(self) -> None:
        self.authenticator = Authenticator(self.secret, self.db, self.run)
        self.rate_limiter = RateLimiter(self.settings.rate_limit, self.settings.rate_burst)
        self.sealer = EnvSealer(self.secret)
        write_beats = functools.partial(self.run, heartbeats.write, self.db)
        self.beats = GroupWriter(write_beats, alone=refused_value)
        self.results = GroupWriter(
            functools.partial(self.run, self._write_results), alone=refused_value
        )
        self.looks = GroupWriter(self._look_many)

    async def _look_many(self, asks: list[watch.Ask]) -> list[watch.Look | EdgefleetError]:
        return await self.run(watch.look_many, self.db, asks)

    def _write_results(self, reports: list[ResultReport]) -> list[None | EdgefleetError]:
        answers = dispatch.report_results(self.db, reports)
        recorded = [answer for answer in answers if isinstance(answer, Outcome)]
        self.notifier.announce(dict.fromkeys(w for answer in recorded for w in answer.wake))
        return [answer if isinstance(answer, EdgefleetError) else None for answer in answers]

    def settle(self, outcome: Outcome[T]) -> T:
        """Pass a service's wake-ups on to the long-polls they concern, and give back its
        answer. Call it off the event loop: telling other replicas may take a round trip."""
        self.notifier.announce(outcome.wake)
        return outcome.value

    async def act(self, call: Callable[P, Outcome[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """``run`` a service call that changes something, then ``settle`` it, both in the
        database threads."""
        return await self.run(lambda: self.settle(call(*args, **kwargs)))

    async def run(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking database call off the event loop.

        The hot routes are ``async`` and hand only their database work to these threads: a
        sync route costs two trips through Starlette's thread pool per request (the call,
        then validating the answer), which halved the requests a server could answer.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.threads, functools.partial(call, *args, **kwargs))

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
