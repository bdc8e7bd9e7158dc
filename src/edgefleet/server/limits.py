"""Request bodies are judged before they are read: too large (413) or anonymous (401).

A pure ASGI middleware, ahead of routing, so the server never buffers an upload it will
refuse:

- a request whose ``Content-Length`` exceeds ``EDGEFLEET_MAX_BODY_BYTES`` is refused at once,
  its body unread (the connection is closed, so the client stops sending);
- a body without a length (chunked) is counted as it arrives and refused when it passes the
  limit; one under the limit is handed on whole;
- a POST, PUT, PATCH or DELETE carrying a body without an ``Authorization: Bearer`` header
  is refused with 401 before its body is read (only ``/api/v1/health`` is open, and it takes
  no body).

It sits on the heartbeat path, so a request with a length and a token costs one pass over
its headers and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from edgefleet.contract import API_PREFIX

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPEN_PATHS = frozenset({API_PREFIX + "/health"})


class Refusal:
    """A prebuilt response (built once, sent as is)."""

    def __init__(self, status: int, body: dict[str, str], headers: dict[str, str]) -> None:
        self.status = status
        self.body = json.dumps(body).encode()
        self.headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
            # The body is left unread: the connection cannot carry another request.
            (b"connection", b"close"),
            *((k.encode(), v.encode()) for k, v in headers.items()),
        ]

    async def send(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


class BodyLimits:
    """``app.add_middleware(BodyLimits, max_body_bytes=...)``."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.too_large = Refusal(
            413,
            {
                "error": "payload_too_large",
                "detail": f"the request body exceeds {max_body_bytes} bytes "
                "(the server's EDGEFLEET_MAX_BODY_BYTES)",
            },
            {},
        )
        self.unauthorized = Refusal(
            401,
            {"error": "unauthorized", "detail": "a request with a body needs a Bearer token"},
            {"www-authenticate": "Bearer"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: bytes | None = None
        streamed = False
        bearer = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                streamed = True
            elif name == b"authorization":
                bearer = value[:7].lower() == b"bearer "
        if length is None and not streamed or length == b"0":
            await self.app(scope, receive, send)  # no body
            return
        if not bearer and scope["method"] in WRITE_METHODS and scope["path"] not in OPEN_PATHS:
            await self.unauthorized.send(send)
            return
        if length is not None and not streamed:
            try:
                declared = int(length)
            except ValueError:
                declared = None  # the HTTP server lets no such request through; count it
            if declared is not None:
                if declared > self.max_body_bytes:
                    await self.too_large.send(send)
                else:
                    await self.app(scope, receive, send)
                return
        await self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A body of unknown length: read it up to the limit, then hand it on whole."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self.too_large.send(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: a disconnect, when it comes
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
