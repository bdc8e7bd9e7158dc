"""Who a bearer token names, answered from memory where possible, and per-credential limits.

A JWT minted from the shared secret is checked by its signature (``auth.verify_token``). An
opaque token (operator token or worker credential) is looked up by its hash in the database
once, then remembered and looked up again in the background every ``RECHECK_SECONDS`` (a
worker's credential: ``WORKER_RECHECK_SECONDS``), plus up to half again so that a fleet that
enrolled together does not come due together: a fleet's heartbeats must not each cost a
query.
Look-ups that come due while one is running go together in one query (``GroupWriter``).
Revoking a token here forgets it at once; another replica learns of it by its next look
(workers are refused at once everywhere: a revoked worker's row refuses its calls).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from edgefleet.auth import JOIN_TOKEN_PREFIX, OPAQUE_PREFIXES, Identity, verify_token
from edgefleet.errors import TooManyRequests, Unauthorized
from edgefleet.grouping import GroupWriter
from edgefleet.server.services import credentials

log = logging.getLogger(__name__)

#: Seconds a looked-up operator token is trusted before it is looked up again.
RECHECK_SECONDS = 10.0
#: The same for a worker's credential: a fleet's worth of look-ups is a cost, and a revoked
#: worker is refused by its own row on every replica anyway (``workers.refusal``).
WORKER_RECHECK_SECONDS = 300.0
#: Opaque tokens remembered (a fleet's worth).
REMEMBERED = 32768

Runner = Callable[..., Awaitable]


@dataclass
class _Remembered:
    identity: Identity
    expires_at: float  # epoch seconds
    recheck_at: float  # monotonic


def _next_look(identity: Identity) -> float:
    every = WORKER_RECHECK_SECONDS if identity.source == "credential" else RECHECK_SECONDS
    return time.monotonic() + every * random.uniform(1.0, 1.5)


class Authenticator:
    def __init__(self, secret: str, db: sessionmaker[Session], run: Runner) -> None:
        self._secret = secret
        self._known: OrderedDict[str, _Remembered] = OrderedDict()
        self._refreshing: set[asyncio.Task[None]] = set()
        self._lookups: GroupWriter[str, credentials.Known | None] = GroupWriter(
            lambda tokens: run(credentials.look_up, db, tokens)
        )

    async def identify(self, token: str) -> Identity:
        if not token.startswith(OPAQUE_PREFIXES):
            return verify_token(self._secret, token)
        if token.startswith(JOIN_TOKEN_PREFIX):
            raise Unauthorized("a join token is good only for enrolling a worker")
        known = self._known.get(token)
        if known is None:
            known = await self._look_up(token)
        elif time.monotonic() >= known.recheck_at:
            # Due for another look: answer from memory now and look in the background, so
            # no request waits on the database for a token it already showed.
            known.recheck_at = math.inf
            refresh = asyncio.create_task(self._refresh(token, known))
            self._refreshing.add(refresh)
            refresh.add_done_callback(self._refreshing.discard)
        if time.time() >= known.expires_at:
            self._known.pop(token, None)
            raise Unauthorized("this token has expired")
        return known.identity

    async def _look_up(self, token: str) -> _Remembered:
        found = await self._lookups.submit(token)
        if found is None:
            self._known.pop(token, None)
            raise Unauthorized("unknown, expired or revoked token")
        known = _Remembered(
            found.identity, found.expires_at.timestamp(), _next_look(found.identity)
        )
        self._known[token] = known
        if len(self._known) > REMEMBERED:
            self._known.popitem(last=False)
        return known

    async def _refresh(self, token: str, known: _Remembered) -> None:
        try:
            await self._look_up(token)
        except Unauthorized:
            pass  # revoked or gone: forgotten, its next request is refused
        except Exception:
            log.warning("could not look token %s... up again", token[:8], exc_info=True)
            known.recheck_at = _next_look(known.identity)

    def forget(self, names: set[str], source: str) -> None:
        """Drop what is remembered of the tokens of ``names`` (revoked just now)."""
        for token, known in list(self._known.items()):
            if known.identity.source == source and known.identity.subject in names:
                del self._known[token]


class RateLimiter:
    """A token bucket per credential: ``rate`` requests a second, bursts up to ``burst``.

    Tokens minted from the shared secret are not limited: their holder can mint any
    identity anyway.
    """

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def check(self, identity: Identity) -> None:
        if self.rate <= 0 or identity.source == "secret":
            return
        key = (identity.source, identity.subject)
        now = time.monotonic()
        level, then = self._buckets.get(key, (self.burst, now))
        level = min(self.burst, level + (now - then) * self.rate)
        if level < 1.0:
            self._buckets[key] = (level, now)
            wait = (1.0 - level) / self.rate
            raise TooManyRequests(
                f"rate limit of {self.rate:g} requests/s for {identity.subject!r} reached; "
                f"retry in {wait:.1f}s",
                retry_after=wait,
            )
        self._buckets[key] = (level - 1.0, now)
