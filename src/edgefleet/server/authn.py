"""Who a bearer token names, answered from memory where possible, and per-credential limits.

A JWT minted from the shared secret is checked by its signature (``auth.verify_token``). An
opaque token (operator token or worker credential) is looked up by its hash in the database
once, then remembered for ``RECHECK_SECONDS``: a fleet's heartbeats must not each cost a
query. Revoking a token here forgets it at once; another replica learns of it by its next
look (workers are refused at once everywhere: a revoked worker's row refuses its calls).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from edgefleet.auth import JOIN_TOKEN_PREFIX, OPAQUE_PREFIXES, Identity, verify_token
from edgefleet.errors import TooManyRequests, Unauthorized
from edgefleet.server.services import credentials

#: Seconds a looked-up opaque token is trusted before it is looked up again.
RECHECK_SECONDS = 10.0
#: Opaque tokens remembered (a fleet's worth).
REMEMBERED = 32768

Runner = Callable[..., Awaitable]


@dataclass
class _Remembered:
    identity: Identity
    expires_at: float  # epoch seconds
    checked_at: float  # monotonic


class Authenticator:
    def __init__(self, secret: str, db: sessionmaker[Session], run: Runner) -> None:
        self._secret = secret
        self._db = db
        self._run = run
        self._known: OrderedDict[str, _Remembered] = OrderedDict()

    async def identify(self, token: str) -> Identity:
        if not token.startswith(OPAQUE_PREFIXES):
            return verify_token(self._secret, token)
        if token.startswith(JOIN_TOKEN_PREFIX):
            raise Unauthorized("a join token is good only for enrolling a worker")
        now = time.monotonic()
        known = self._known.get(token)
        if known is None or now - known.checked_at > RECHECK_SECONDS:
            found = await self._run(credentials.look_up, self._db, token)
            if found is None:
                self._known.pop(token, None)
                raise Unauthorized("unknown, expired or revoked token")
            known = _Remembered(found.identity, found.expires_at.timestamp(), now)
            self._known[token] = known
            if len(self._known) > REMEMBERED:
                self._known.popitem(last=False)
        if time.time() >= known.expires_at:
            self._known.pop(token, None)
            raise Unauthorized("this token has expired")
        return known.identity

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
