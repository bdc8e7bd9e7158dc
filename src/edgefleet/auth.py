"""Short-lived signed tokens (HS256 JWT) minted per request from the shared secret.

A worker's token names the worker (``sub``) and carries role ``worker``; the server lets it act
only as that worker. Admin tokens carry role ``admin`` and name the operator, which the audit
log records as the actor.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass

import httpx
import jwt

from edgefleet.errors import Unauthorized

TOKEN_TTL_SECONDS = 60
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
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            leeway=30,
            options={"require": ["sub", "role", "exp", "iat"]},
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from exc
    if claims["exp"] - claims["iat"] > MAX_TOKEN_LIFETIME_SECONDS:
        raise Unauthorized("invalid token: its lifetime is longer than the server allows (24 h)")
    if claims["role"] not in ("worker", "admin"):
        raise Unauthorized(f"unknown role {claims['role']!r}")
    return Identity(subject=claims["sub"], role=claims["role"])


class TokenAuth(httpx.Auth):
    """Signs every outgoing request with a fresh token, so no token outlives its minute."""

    def __init__(self, secret: str, identity: Identity) -> None:
        self._secret = secret
        self._identity = identity

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {mint_token(self._secret, self._identity)}"
        yield request
