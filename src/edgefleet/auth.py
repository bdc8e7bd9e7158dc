"""Short-lived signed tokens (HS256 JWT) minted from the shared secret.

A worker's token names the worker (``sub``) and carries role ``worker``; the server lets it act
only as that worker. Admin tokens carry role ``admin`` and name the operator, which the audit
log records as the actor.

A client signs its requests with one token for half of its minute, then mints the next; the
server remembers the tokens it verified until they expire, since checking a signature and its
claims costs more than the rest of a heartbeat.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from functools import lru_cache

import httpx
import jwt

from edgefleet.errors import Unauthorized

TOKEN_TTL_SECONDS = 60
#: Seconds a client signs with one token before it mints the next.
TOKEN_REUSE_SECONDS = TOKEN_TTL_SECONDS / 2
#: Verified tokens the server remembers (a fleet's worth: one or two per worker).
VERIFIED_CACHE_SIZE = 32768
LEEWAY_SECONDS = 30
#: The longest lifetime (exp - iat) the server accepts, e.g. for the web UI's pasted token.
MAX_TOKEN_LIFETIME_SECONDS = 24 * 3600
ALGORITHM = "HS256"
AUDIENCE = "edgefleet"


@dataclass(frozen=True)
class Identity:
    subject: str
    role: str  # "worker" or "admin"


def mint_token(secret: str, identity: Identity, ttl: float = TOKEN_TTL_SECONDS) -> str:
    now = int(time.time())
    claims = {
        "sub": identity.subject,
        "role": identity.role,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + int(ttl),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> Identity:
    identity, expires = _verified(secret, token)
    if time.time() > expires + LEEWAY_SECONDS:  # a remembered token expires all the same
        raise Unauthorized("invalid token: Signature has expired")
    return identity


@lru_cache(maxsize=VERIFIED_CACHE_SIZE)
def _verified(secret: str, token: str) -> tuple[Identity, float]:
    """The identity a valid token names and when it expires; a refusal is never remembered
    (it raises)."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            leeway=LEEWAY_SECONDS,
            options={"require": ["sub", "role", "exp", "iat"]},
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from exc
    if claims["exp"] - claims["iat"] > MAX_TOKEN_LIFETIME_SECONDS:
        raise Unauthorized("invalid token: its lifetime is longer than the server allows (24 h)")
    if claims["role"] not in ("worker", "admin"):
        raise Unauthorized(f"unknown role {claims['role']!r}")
    return Identity(subject=claims["sub"], role=claims["role"]), float(claims["exp"])


class TokenAuth(httpx.Auth):
    """Signs every outgoing request with a current token: one is used for
    ``TOKEN_REUSE_SECONDS``, so none is sent in the last half of its minute."""

    def __init__(self, secret: str, identity: Identity) -> None:
        self._secret = secret
        self._identity = identity
        self._token = ""
        self._renew_at = 0.0

    def token(self) -> str:
        now = time.monotonic()
        if now >= self._renew_at:
            self._token = mint_token(self._secret, self._identity)
            self._renew_at = now + TOKEN_REUSE_SECONDS
        return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request
