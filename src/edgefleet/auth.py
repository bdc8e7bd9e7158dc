"""Who a request comes from: tokens minted from the shared secret, and opaque tokens.

Two kinds of bearer token exist:

- HS256 JWTs minted from the shared secret (``EDGEFLEET_SECRET``). Whoever holds the secret can
  mint any identity, so these carry full rights: single-host set-ups, the demo and the
  bootstrap commands on the server host use them. A worker's JWT names the worker (``sub``)
  with role ``worker``; an admin's names the operator, whom the audit log records.
- Opaque tokens the server issues and stores only as a SHA-256 (``edgefleet.server.
  credentials``): operator tokens (``efo_``, role viewer, operator or admin), worker
  credentials (``efw_``, bound to one hostname) and join tokens (``efj_``, good only to
  enroll). They hold no secret that could mint another identity.

A client (:mod:`edgefleet.client_auth`) signs its requests with one token for half of its
minute, then mints the next; the server remembers the tokens it verified until they expire,
since checking a signature and its claims costs more than the rest of a heartbeat.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache

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


#: Operator roles, each allowed everything the ones before it are.
OPERATOR_ROLES = ("viewer", "operator", "admin")
WORKER_ROLE = "worker"
ROLES = (*OPERATOR_ROLES, WORKER_ROLE)

#: Prefixes of the opaque tokens the server issues (a JWT never starts with one).
OPERATOR_TOKEN_PREFIX = "efo_"
WORKER_CREDENTIAL_PREFIX = "efw_"
JOIN_TOKEN_PREFIX = "efj_"
OPAQUE_PREFIXES = (OPERATOR_TOKEN_PREFIX, WORKER_CREDENTIAL_PREFIX, JOIN_TOKEN_PREFIX)


@dataclass(frozen=True)
class Identity:
    subject: str
    role: str  # one of ROLES
    #: "secret" (a JWT minted from the shared secret: full rights), "token" (an operator
    #: token) or "credential" (a worker's own credential).
    source: str = "secret"

    def allows(self, role: str) -> bool:
        """Whether this identity may act with ``role``: operator roles include the ones below
        them; the worker role is its own."""
        if role == WORKER_ROLE or self.role == WORKER_ROLE:
            return self.role == role
        return OPERATOR_ROLES.index(self.role) >= OPERATOR_ROLES.index(role)


def new_opaque_token(prefix: str) -> str:
    """A fresh random token: 256 bits, URL-safe, with its kind's prefix."""
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the server stores of an opaque token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def mint_token(secret: str, identity: Identity, ttl: float = TOKEN_TTL_SECONDS) -> str:
    now = int(time.time())
    claims = {
        "sub": identity.subject,
        "role": identity.role,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + int(ttl),
    }
    import jwt  # here: a CLI call with an operator token never mints, and PyJWT is slow to load

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
    import jwt

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
    if claims["role"] not in ROLES:
        raise Unauthorized(f"unknown role {claims['role']!r}")
    return Identity(subject=claims["sub"], role=claims["role"]), float(claims["exp"])
