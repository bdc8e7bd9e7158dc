"""Admin API for operator tokens and join tokens, and ``/whoami`` for any token holder."""

from __future__ import annotations

from fastapi import APIRouter

from edgefleet.contract import (
    JoinTokenIssued,
    JoinTokenRequest,
    TokenIssued,
    TokenName,
    TokenRequest,
    TokenView,
    WhoAmI,
)
from edgefleet.server.deps import AdminDep, AnyIdentityDep, ContextDep
from edgefleet.server.services import credentials

router = APIRouter(tags=["tokens"])


@router.post("/tokens", response_model=TokenIssued, status_code=201)
def create_token(body: TokenRequest, context: ContextDep, identity: AdminDep):
    """A new operator token; its value is in this answer only (the server keeps a hash)."""
    issued = credentials.issue_operator_token(context.db, body, identity.subject)
    return TokenIssued(
        token=issued.token, name=issued.name, role=issued.role, expires_at=issued.expires_at
    )


@router.get("/tokens", response_model=list[TokenView])
def list_tokens(context: ContextDep, identity: AdminDep):
    """Operator tokens, newest first; never their values."""
    return credentials.list_tokens(context.db)


@router.delete("/tokens/{name}", status_code=204)
def revoke_token(name: TokenName, context: ContextDep, identity: AdminDep):
    """The token stops working with its next request."""
    credentials.revoke_operator_token(context.db, name, identity.subject)
    context.authenticator.forget({name}, "token")


@router.post("/tokens/join", response_model=JoinTokenIssued, status_code=201)
def create_join_token(body: JoinTokenRequest, context: ContextDep, identity: AdminDep):
    """A token a new worker enrolls with (``edgefleet worker --join-token``)."""
    issued = credentials.create_join_token(context.db, body, identity.subject)
    return JoinTokenIssued(
        token=issued.token, expires_at=issued.expires_at, uses=body.uses, labels=body.labels
    )


@router.get("/whoami", response_model=WhoAmI)
async def whoami(identity: AnyIdentityDep):
    """Whom the token names and what it may do (the web UI shows only what the role may)."""
    return WhoAmI(name=identity.subject, role=identity.role, source=identity.source)
