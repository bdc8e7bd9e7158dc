"""FastAPI dependencies: the server context and the caller's verified identity and role.

They are ``async`` on purpose: they do no blocking I/O (an unknown opaque token is looked up
on the database threads), and a sync dependency costs a trip through the thread pool per
request, which a busy fleet turns into queueing. And each is a single node that reads the
request itself: FastAPI spends time on every node of a dependency tree on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPBearer

from edgefleet.auth import Identity
from edgefleet.contract import HOSTNAME_PATTERN
from edgefleet.errors import Forbidden, Unauthorized
from edgefleet.server.context import ServerContext


async def get_context(request: Request) -> ServerContext:
    return request.app.state.context


ContextDep = Annotated[ServerContext, Depends(get_context)]


def bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not token.strip() or scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token")
    return token.strip()


class BearerRole(HTTPBearer):
    """The verified identity behind the request's bearer token, which must allow ``role``
    (viewer < operator < admin; worker on its own), within its credential's rate limit.

    An ``HTTPBearer``, so the OpenAPI schema documents the scheme (and /docs offers its
    Authorize button), but one that verifies the token and the role in the same call.
    """

    def __init__(self, role: str | None) -> None:
        super().__init__(
            scheme_name="HTTPBearer",
            description="An operator token (`edgefleet token create`), a worker's credential, "
            "or a token signed with EDGEFLEET_SECRET",
            auto_error=False,
        )
        self.role = role  # None: any valid token
        self.article = "an" if role and role[0] in "aeiou" else "a"

    async def __call__(self, request: Request) -> Identity:  # type: ignore[override]
        context: ServerContext = request.app.state.context
        identity = await context.authenticator.identify(bearer_token(request))
        if self.role is not None and not identity.allows(self.role):
            raise Forbidden(
                f"this endpoint needs {self.article} {self.role} token "
                f"({identity.subject!r} is {identity.role})"
            )
        context.rate_limiter.check(identity)
        return identity


ViewerDep = Annotated[Identity, Depends(BearerRole("viewer"))]
OperatorDep = Annotated[Identity, Depends(BearerRole("operator"))]
AdminDep = Annotated[Identity, Depends(BearerRole("admin"))]
#: A worker's token, checked by a route that reads its request itself (``routes.edge.watch``).
WORKER = BearerRole("worker")
WorkerDep = Annotated[Identity, Depends(WORKER)]
AnyIdentityDep = Annotated[Identity, Depends(BearerRole(None))]

#: A worker's name in a path: what a worker may be called, so a pattern (``*``) or a name no
#: worker can have is refused (422) before any route sees it.
HostnamePath = Annotated[str, Path(max_length=255, pattern=HOSTNAME_PATTERN)]


def own_hostname(identity: Identity, hostname: str) -> str:
    """A worker token may act only for the worker it names."""
    if identity.subject != hostname:
        raise Forbidden(f"a token for {identity.subject!r} cannot act as worker {hostname!r}")
    return hostname
