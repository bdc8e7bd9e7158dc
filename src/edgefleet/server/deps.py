"""FastAPI dependencies: the server context and the caller's verified identity.

They are ``async`` on purpose: they do no I/O, and a sync dependency costs a trip through
the thread pool per request, which a busy fleet turns into queueing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from edgefleet.auth import Identity, verify_token
from edgefleet.errors import Forbidden, Unauthorized
from edgefleet.server.context import ServerContext

_bearer = HTTPBearer(auto_error=False, description="A token signed with EDGEFLEET_SECRET")


async def get_context(request: Request) -> ServerContext:
    return request.app.state.context


ContextDep = Annotated[ServerContext, Depends(get_context)]


async def get_identity(
    context: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    if credentials is None:
        raise Unauthorized("missing bearer token")
    return verify_token(context.secret, credentials.credentials)


async def require_admin(identity: Annotated[Identity, Depends(get_identity)]) -> Identity:
    if identity.role != "admin":
        raise Forbidden("this endpoint needs an admin token")
    return identity


async def require_worker(identity: Annotated[Identity, Depends(get_identity)]) -> Identity:
    if identity.role != "worker":
        raise Forbidden("this endpoint needs a worker token")
    return identity


AdminDep = Annotated[Identity, Depends(require_admin)]
WorkerDep = Annotated[Identity, Depends(require_worker)]


def own_hostname(identity: Identity, hostname: str) -> str:
    """A worker token may act only for the worker it names."""
    if identity.subject != hostname:
        raise Forbidden(f"a token for {identity.subject!r} cannot act as worker {hostname!r}")
    return hostname
