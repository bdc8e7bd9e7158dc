"""The server's memory of opaque tokens: looked up once, looked up again in the background."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import update

from edgefleet.contract import TokenRequest
from edgefleet.db.models import Credential
from edgefleet.db.types import utcnow
from edgefleet.errors import Unauthorized
from edgefleet.server import authn
from edgefleet.server.services import credentials

#: The server's own memory of tokens; the database only keeps the rows it looks up.
pytestmark = pytest.mark.same_on_every_backend


async def _run(call, *args):
    return await asyncio.to_thread(call, *args)


@pytest.fixture
def operator_token(session_factory) -> str:
    request = TokenRequest(name="ops", role="operator")
    return credentials.issue_operator_token(session_factory, request, "test").token


async def test_a_token_revoked_elsewhere_is_refused_after_the_next_look(
    session_factory, operator_token, monkeypatch
):
    auth = authn.Authenticator("s" * 32, session_factory, _run)
    assert (await auth.identify(operator_token)).subject == "ops"
    # Another replica revokes it: this one does not hear of it until it looks again.
    with session_factory.begin() as session:
        session.execute(update(Credential).values(revoked_at=utcnow()))
    assert (await auth.identify(operator_token)).role == "operator"  # remembered

    monkeypatch.setattr(authn, "RECHECK_SECONDS", 0.0)
    auth._known[operator_token].recheck_at = 0.0
    await auth.identify(operator_token)  # answered from memory; the look runs behind it
    await asyncio.gather(*auth._refreshing)
    with pytest.raises(Unauthorized):
        await auth.identify(operator_token)


async def test_revoking_here_forgets_at_once(session_factory, operator_token):
    auth = authn.Authenticator("s" * 32, session_factory, _run)
    await auth.identify(operator_token)
    credentials.revoke_operator_token(session_factory, "ops", "test")
    auth.forget({"ops"}, "token")
    with pytest.raises(Unauthorized):
        await auth.identify(operator_token)


async def test_many_tokens_due_together_are_looked_up_in_one_query(session_factory):
    tokens = [
        credentials.issue_operator_token(
            session_factory, TokenRequest(name=f"t{i}", role="viewer"), "test"
        ).token
        for i in range(20)
    ]
    calls: list[int] = []

    async def counting(call, db, batch):
        calls.append(len(batch))
        return await asyncio.to_thread(call, db, batch)

    auth = authn.Authenticator("s" * 32, session_factory, counting)
    names = await asyncio.gather(*(auth.identify(token) for token in tokens))
    assert [n.subject for n in names] == [f"t{i}" for i in range(20)]
    assert sum(calls) == 20 and len(calls) < 20
