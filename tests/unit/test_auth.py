"""Tokens: a verified token is remembered, but never past its expiry; clients reuse one."""

from __future__ import annotations

import time

import httpx
import pytest

from edgefleet import auth
from edgefleet.auth import Identity, mint_token, verify_token
from edgefleet.client_auth import TokenAuth
from edgefleet.errors import Unauthorized

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

SECRET = "s" * 32


def test_a_remembered_token_still_expires(monkeypatch):
    token = mint_token(SECRET, Identity("w1", "worker"), ttl=5)
    assert verify_token(SECRET, token) == Identity("w1", "worker")
    later = time.time() + 5 + auth.LEEWAY_SECONDS + 1
    monkeypatch.setattr(auth.time, "time", lambda: later)
    with pytest.raises(Unauthorized, match="expired"):
        verify_token(SECRET, token)


def test_a_token_is_checked_against_the_secret_it_is_presented_with():
    token = mint_token(SECRET, Identity("w1", "worker"))
    verify_token(SECRET, token)
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token("t" * 32, token)


def test_a_refused_token_is_refused_every_time():
    for _ in range(2):
        with pytest.raises(Unauthorized):
            verify_token(SECRET, "not.a.token")


def test_a_client_reuses_its_token_for_half_a_minute(monkeypatch):
    signer = TokenAuth(SECRET, Identity("w1", "worker"))
    now = 1000.0
    monkeypatch.setattr(auth.time, "monotonic", lambda: now)

    def sign() -> str:
        request = httpx.Request("GET", "http://server/")
        return next(signer.auth_flow(request)).headers["Authorization"]

    first = sign()
    now += auth.TOKEN_REUSE_SECONDS - 1
    assert sign() == first
    now += 2
    later = time.time() + auth.TOKEN_REUSE_SECONDS + 1  # so the next token's iat differs
    monkeypatch.setattr(auth.time, "time", lambda: later)
    assert sign() != first
