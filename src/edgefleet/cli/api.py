"""The admin commands' HTTP client: every admin command goes through the server's API."""

from __future__ import annotations

import getpass
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

# httpx loads its own command-line tool whenever click, rich and pygments are installed (as
# they are here, for typer): a third of an admin command's start-up, for a tool this
# process never runs. Marking the module absent makes httpx skip it.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402

from edgefleet import API_PREFIX  # noqa: E402
from edgefleet.api_urls import ServerList  # noqa: E402
from edgefleet.auth import Identity  # noqa: E402
from edgefleet.client_auth import BearerAuth, TokenAuth  # noqa: E402
from edgefleet.errors import EdgefleetError  # noqa: E402
from edgefleet.throttle import retry_after_seconds  # noqa: E402
from edgefleet.tls import (  # noqa: E402
    ClientConfigError,
    ClientTls,
    describe_tls_failure,
    disconnect_hint,
    origin,
)

#: Longest a command waits out a 429 before its one retry; a longer Retry-After fails at once.
MAX_RATE_LIMIT_WAIT = 30.0

log = logging.getLogger(__name__)


class ClientConfig(Protocol):
    """What the client reads of its settings: ``edgefleet.client_settings.ClientSettings``
    in the CLI, or the full ``edgefleet.settings.Settings``."""

    api_url: str
    token: str | None
    token_file: Path | None
    ca_file: Path | None
    client_cert: Path | None
    client_key: Path | None

    def existing_secret(self) -> str | None: ...


class ApiError(EdgefleetError):
    """The server refused a request or could not be reached; the message says which, in
    the words a command prints. ``status_code``: the server's answer (None: no answer)."""

    def __init__(self, message: str, status_code: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class _Unreachable(Exception):
    """No answer from one server; ``sent`` if the request may have reached it."""

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


#: Transport errors that leave the request unsent, so it may go to another server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def operator_name() -> str:
    """Who the audit log names for changes made from this shell."""
    return os.environ.get("EDGEFLEET_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


#: Refusals about who is asking rather than what: said as such, since the fix is the token.
_REFUSALS = {401: "not signed in", 403: "not allowed"}


def _describe(body: Any) -> str:
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        if isinstance(detail, list):  # validation errors
            return "; ".join(f"{_where(e.get('loc', []))}: {e.get('msg')}" for e in detail)
        return str(detail)
    return str(body)


def _where(loc: list) -> str:
    """The field a validation error is about: ``jobs.3.command`` in a body; a query
    parameter by its name alone (a repeated one's index means nothing to the user)."""
    if loc[:1] == ["query"]:
        loc = loc[:2]
    return ".".join(str(part) for part in loc[1:]) or "request"


def read_token_file(path: Path) -> str:
    """The operator token kept in ``path`` (surrounding whitespace ignored)."""
    try:
        text = path.read_text()
        mode = path.stat().st_mode
    except OSError as exc:
        raise ApiError(f"cannot read the token file {path}: {exc.strerror}") from exc
    token = text.strip()
    if not token:
        raise ApiError(f"the token file {path} is empty")
    if any(ch.isspace() for ch in token):
        raise ApiError(f"the token file {path} must hold one token and nothing else")
    if mode & 0o077:
        log.warning("the token file %s can be read by other users: chmod 600 it", path)
    return token


def client_auth(settings: ClientConfig) -> httpx.Auth:
    """Who the CLI is to the server: the operator token from ``--token-file`` or
    EDGEFLEET_TOKEN; else, on a machine holding the shared secret, an admin token minted
    from it in the name of ``operator_name()``."""
    if settings.token_file is not None:
        return BearerAuth(read_token_file(settings.token_file))
    if settings.token and settings.token.strip():
        return BearerAuth(settings.token.strip())
    secret = settings.existing_secret()
    if secret:
        return TokenAuth(secret, Identity(subject=operator_name(), role="admin"))
    raise ApiError(
        "no credentials for the edgefleet server: set EDGEFLEET_TOKEN (or --token-file) to an "
        "operator token from `edgefleet token create`, or run this on the server host"
    )


class AdminClient:
    def __init__(
        self,
        settings: ClientConfig,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Raises ``ApiError`` for a malformed API URL or an unusable TLS file.
        ``settings.api_url`` may name several replicas (``edgefleet.api_urls``)."""
        self._tls = ClientTls.from_settings(settings)
        try:
            self.servers = ServerList(settings.api_url)
            verify = self._tls.verify_for(self.servers.urls)
        except ClientConfigError as exc:
            raise ApiError(str(exc)) from exc
        self._sleep = sleep
        self._http = httpx.Client(
            auth=client_auth(settings),
            timeout=httpx.Timeout(30.0),
            transport=transport,
            verify=verify,
        )

    @property
    def base_url(self) -> str:
        """The server this client talks to now."""
        return self.servers.current

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send to the current server; move to the next one while a server cannot be
        reached or fails (each at most once). A request the failed server may have carried
        out (it answered 5xx, or the connection broke after sending) goes on only if it is
        a read: a submit is never sent twice."""
        tried = 0
        while True:
            server = self.servers.current
            tried += 1
            try:
                response = self._send_to(server, method, url, **kwargs)
            except _Unreachable as exc:
                if not self._move_on(server, tried, exc.sent and method != "GET"):
                    raise ApiError(str(exc)) from exc
                continue
            if response.status_code >= 500 and self._move_on(
                server, tried, method != "GET" and response.status_code != 503
            ):
                continue
            return response

    def _move_on(self, server: str, tried: int, maybe_done: bool) -> bool:
        """Whether to try the next server after ``server`` failed."""
        if maybe_done or tried >= len(self.servers):
            return False
        self.servers.failed(server)
        log.warning("server %s failed; trying %s", server, self.servers.current)
        return True

    def _send_to(self, server: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, server + API_PREFIX + url, **kwargs)
        except httpx.TransportError as exc:
            where = origin(server)
            problem = describe_tls_failure(exc, where)
            if problem is not None:
                raise ApiError(problem) from exc
            hint = disconnect_hint(exc, where, self._tls)
            raise _Unreachable(
                f"cannot reach the edgefleet server at {server}: {exc}{hint}",
                sent=not isinstance(exc, _NOT_SENT),
            ) from exc

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """One call; a 429 is waited out (``Retry-After``, at most 30 s) and tried once more."""
        response = self._send(method, url, **kwargs)
        if response.status_code == 429:
            delay = retry_after_seconds(response.headers.get("retry-after"))
            if delay <= MAX_RATE_LIMIT_WAIT:
                self._sleep(delay)
                response = self._send(method, url, **kwargs)
            if response.status_code == 429:
                delay = retry_after_seconds(response.headers.get("retry-after"))
                raise ApiError(
                    f"the server is rate-limiting this client (429): try again in {delay:g}s",
                    429,
                    response.text,
                )
        if not response.is_success:  # a redirect too: this client follows none
            try:
                body = response.json()
            except ValueError:
                body = response.text
            message = _describe(body) or f"HTTP {response.status_code}"
            if response.status_code in _REFUSALS:
                message = (
                    f"{_REFUSALS[response.status_code]} (HTTP {response.status_code}): {message}"
                )
            raise ApiError(message, response.status_code, body)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> Any:
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Any:
        return self.request("DELETE", url, **kwargs)
