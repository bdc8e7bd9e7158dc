"""FastAPI dependencies: the server context and the caller's verified identity.

They are ``async`` on purpose: they do no I/O, and a sync dependency costs a trip through
the thread pool per request, which a busy fleet turns into queueing. And each is a single
node that reads the request itself: FastAPI spends time on every node of a dependency tree
on every request, and the tree of bearer scheme, context, identity and role check took a
quarter of a heartbeat's time.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from edgefleet.auth import Identity, verify_token
from edgefleet.errors import Forbidden, Unauthorized
from edgefleet.server.context import ServerContext


async def get_context(request: Request) -> ServerContext:
    return request.app.state.context


ContextDep = Annotated[ServerContext, Depends(get_context)]


class BearerRole(HTTPBearer):
    """The verified identity behind the request's bearer token, which must carry ``role``.

    An ``HTTPBearer``, so the OpenAPI schema documents the scheme (and /docs offers its
    Authorize button), but one that verifies the token and the role in the same call.
    """

    def __init__(self, role: str) -> None:
        super().__init__(
            scheme_name="HTTPBearer",
            description="A token signed with EDGEFLEET_SECRET",
            auto_error=False,
        )
        self.role = role
        self.article = "an" if role[0] in "aeiou" else "a"

    async def __call__(self, request: Request) -> Identity:  # type: ignore[override]
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if not token or scheme.lower() != "bearer":
            raise Unauthorized("missing bearer token")
        identity = verify_token(request.app.state.context.secret, token.strip())
        if identity.role != self.role:
            raise Forbidden(f"this endpoint needs {self.article} {self.role} token")
        return identity


AdminDep = Annotated[Identity, Depends(BearerRole("admin"))]
WorkerDep = Annotated[Identity, Depends(BearerRole("worker"))]


def own_hostname(identity: Identity, hostname: str) -> str:
    """A worker token may act only for the worker it names."""
    if identity.subject != hostname:
        raise Forbidden(f"a token for {identity.subject!r} cannot act as worker {hostname!r}")
    return hostname
