"""How a client (a worker, the CLI) signs its requests: httpx authentication flows that send
a bearer token. Apart from :mod:`edgefleet.auth`, so the server, which only verifies tokens,
never loads httpx."""

from __future__ import annotations

import time
from collections.abc import Generator

import httpx

from edgefleet.auth import TOKEN_REUSE_SECONDS, Identity, mint_token


class BearerAuth(httpx.Auth):
    """Sends one fixed bearer token (an operator token or a worker credential); ``token`` may
    be replaced while the client is in use (a rotated credential)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


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
