"""The worker's HTTP client for the server's worker API.

Every failure reaches the worker as a class of ``edgefleet.errors``: ``Refused`` and its
subclasses for a 4xx (``refusal()``; ``NotRegistered`` for the worker's own calls),
``TooManyRequests`` for a 429, ``ServerUnavailable`` (``TlsFailure``) when no server answered
usably. Callers branch on those classes, never on a status code.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import TypeVar

import httpx
from pydantic import BaseModel

from edgefleet.api_urls import ServerList
from edgefleet.auth import Identity
from edgefleet.client_auth import BearerAuth, TokenAuth
from edgefleet.contract import (
    API_PREFIX,
    FetchRequest,
    FetchResponse,
    Heartbeat,
    JobRelease,
    LocalMaintenance,
    LogChunk,
    Registration,
    ReportedResult,
    ResultBatch,
    ResultOutcomes,
    WatchQuery,
    WorkerContact,
    WorkerState,
)
from edgefleet.errors import (
    Conflict,
    NotFound,
    NotRegistered,
    Refused,
    ServerUnavailable,
    TlsFailure,
    TooManyRequests,
    refusal,
)
from edgefleet.throttle import retry_after_seconds
from edgefleet.tls import ClientTls, describe_tls_failure, disconnect_hint, origin

log = logging.getLogger(__name__)

#: Seconds an idle connection to the server is kept for reuse: longer than a heartbeat
#: interval, shorter than the server's keep-alive (``EDGEFLEET_KEEP_ALIVE``, 75 s), so beats
#: reuse one connection. A connection the server closed first is retried once (``_send``).
KEEPALIVE_SECONDS = 60.0

M = TypeVar("M", bound=BaseModel)


def retry_after(exc: Exception) -> float:
    """The least a caller waits before trying again after ``exc`` (0: no demand)."""
    return exc.retry_after if isinstance(exc, TooManyRequests) else 0.0


def _read(model: type[M], response: httpx.Response) -> M:
    """The answer as ``model``; one that is not (a proxy's page, a cut body) is an outage,
    so what was sent is sent again rather than taken as refused."""
    try:
        return model.model_validate_json(response.content)
    except ValueError as exc:
        raise _unreadable(response) from exc


def _read_json(response: httpx.Response) -> dict:
    try:
        answer = response.json()
    except ValueError as exc:
        raise _unreadable(response) from exc
    if not isinstance(answer, dict):
        raise _unreadable(response)
    return answer


def _unreadable(response: httpx.Response) -> ServerUnavailable:
    request = response.request
    return ServerUnavailable(
        f"{request.method} {request.url.path}: HTTP {response.status_code} with an answer "
        "that is not the API's"
    )


class EdgeClient:
    def __init__(
        self,
        api_url: str | Iterable[str] | ServerList,
        hostname: str,
        secret: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        auth: httpx.Auth | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        """Signs requests with ``auth`` (a worker credential) or, without it, with tokens
        minted from ``secret``. ``api_url``: one server or several (replicas), see
        ``edgefleet.api_urls``. Raises ``ClientConfigError`` for a malformed URL or an
        unusable TLS file."""
        self.hostname = hostname
        if auth is None:
            if secret is None:
                raise ValueError("EdgeClient needs a secret or an auth")
            auth = TokenAuth(secret, Identity(subject=hostname, role="worker"))
        self.servers = api_url if isinstance(api_url, ServerList) else ServerList(api_url)
        self.tls = tls or ClientTls()
        #: Call name (the URL's last segment) -> monotonic time before which it is not sent.
        self._paused: dict[str, float] = {}
        self._http = httpx.AsyncClient(
            verify=self.tls.verify_for(self.servers.urls),
            auth=auth,
            timeout=httpx.Timeout(15.0),
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS),
            transport=transport,
        )

    @property
    def api_url(self) -> str:
        """The server this client talks to now."""
        return self.servers.current

    async def aclose(self) -> None:
        await self._http.aclose()

    async def check_server(self) -> None:
        """Start-up: raise ``TlsFailure`` if TLS to any of the servers fails; the first that
        answers becomes the current one. Servers not up yet are left to the worker's
        retries."""
        answers = await asyncio.gather(*(self._health(url) for url in self.servers.urls))
        up = [url for url, answered in zip(self.servers.urls, answers, strict=True) if answered]
        if up:
            self.servers.use(up[0])

    async def _health(self, url: str) -> bool:
        try:
            response = await self._http.get(url + API_PREFIX + "/health")
        except httpx.TransportError as exc:
            problem = describe_tls_failure(exc, origin(url))
            if problem is not None:
                raise TlsFailure(problem) from exc
            return False
        return response.status_code < 500

    async def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        """One call to the current server; one that cannot be reached, times out or answers
        5xx is left for the next one, where the call is sent at once (each server at most
        once per call). Every worker call is idempotent.

        After a 429 the same call (``heartbeat``, ``fetch``, ``logs``...) is refused here,
        unsent, until the server's ``Retry-After`` has passed."""
        call = path.rsplit("/", 1)[-1]
        if self._paused:
            self._check_pause(call)
        tried = 0
        while True:
            server = self.servers.current
            try:
                response = await self._send(server, method, path, **kwargs)
                break
            except ServerUnavailable as exc:
                tried += 1
                if self.servers.failed(server):
                    log.warning(
                        "worker %s: server %s failed (%s); moving to %s",
                        self.hostname,
                        server,
                        exc,
                        self.servers.current,
                    )
                if (
                    isinstance(exc, TlsFailure)
                    or tried >= len(self.servers)
                    or self.servers.current == server
                ):
                    raise
        if response.status_code == 429:
            delay = retry_after_seconds(response.headers.get("retry-after"))
            self._paused[call] = time.monotonic() + delay
            raise TooManyRequests(f"{method} {path}: HTTP 429, retry after {delay:g}s", delay)
        if response.status_code >= 400:
            raise refusal(response.status_code, _detail(response))
        return response

    async def _worker_call(self, method: str, path: str, **kwargs) -> httpx.Response:
        """A call only the worker the server knows may make (this process's instance):
        its 404 (the worker was deleted) or 409 (another instance replaced this one) is
        ``NotRegistered``."""
        try:
            return await self._call(method, path, **kwargs)
        except (NotFound, Conflict) as exc:
            raise refusal(exc.status_code, exc.detail, NotRegistered) from exc

    async def _send(self, server: str, method: str, path: str, **kwargs) -> httpx.Response:
        """One request to ``server``; a connection that broke under it (a kept-alive
        connection the link dropped) is retried once on a fresh one. ``ServerUnavailable``
        when it cannot be reached or answers 5xx."""
        url = server + API_PREFIX + "/edge" + path
        where = origin(server)
        try:
            try:
                response = await self._http.request(method, url, **kwargs)
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
                if describe_tls_failure(exc, where) is not None:
                    raise
                response = await self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            problem = describe_tls_failure(exc, where)
            if problem is not None:
                raise TlsFailure(problem) from exc
            hint = disconnect_hint(exc, where, self.tls)
            raise ServerUnavailable(f"{method} {url}: {exc!r}{hint}") from exc
        if response.status_code >= 500:
            raise ServerUnavailable(f"{method} {url}: HTTP {response.status_code}")
        return response

    def paused_for(self, call: str) -> float:
        """Seconds before ``call`` may be sent again after a 429 (0: now)."""
        until = self._paused.get(call)
        return 0.0 if until is None else max(0.0, until - time.monotonic())

    def _check_pause(self, call: str) -> None:
        until = self._paused.get(call)
        if until is None:
            return
        left = until - time.monotonic()
        if left <= 0:
            del self._paused[call]
            return
        raise TooManyRequests(
            f"{call}: not sent, rate limited by the server for {left:.1f}s more", left
        )

    async def register(self, body: Registration) -> WorkerContact:
        response = await self._call(
            "POST", f"/workers/{self.hostname}/register", json=body.model_dump(mode="json")
        )
        return _read(WorkerContact, response)

    async def heartbeat(self, body: Heartbeat) -> WorkerContact:
        response = await self._worker_call(
            "POST", f"/workers/{self.hostname}/heartbeat", json=body.model_dump(mode="json")
        )
        return _read(WorkerContact, response)

    async def watch(
        self,
        instance_id: str,
        version: int,
        free_slots: int,
        timeout: float,
        applied: tuple[int, WorkerState] | None = None,
    ) -> WorkerContact:
        """``applied``: acknowledge ``version`` as applied with this concurrency, in this
        state (the server records it before the long-poll waits, as a heartbeat would)."""
        ack = {}
        if applied is not None:
            concurrency, state = applied
            ack = {"applied_version": version, "applied_concurrency": concurrency, "state": state}
        query = WatchQuery(
            instance_id=instance_id, version=version, free_slots=free_slots, timeout=timeout, **ack
        )
        params = query.model_dump(mode="json", exclude_none=True)
        response = await self._worker_call(
            "GET",
            f"/workers/{self.hostname}/watch",
            params=params,
            timeout=httpx.Timeout(15.0, read=timeout + 15.0),
        )
        return _read(WorkerContact, response)

    async def local_maintenance(self, body: LocalMaintenance) -> WorkerContact:
        response = await self._worker_call(
            "POST", f"/workers/{self.hostname}/maintenance", json=body.model_dump(mode="json")
        )
        return _read(WorkerContact, response)

    async def fetch(self, body: FetchRequest) -> FetchResponse:
        response = await self._worker_call(
            "POST", f"/workers/{self.hostname}/fetch", json=body.model_dump(mode="json")
        )
        return _read(FetchResponse, response)

    async def report_results(self, results: list[ReportedResult]) -> list[Refused | None]:
        """Several results in one request; each is answered on its own (a refusal)."""
        body = ResultBatch(results=results).model_dump(mode="json")
        response = await self._call("POST", f"/workers/{self.hostname}/results", json=body)
        outcomes = _read(ResultOutcomes, response).outcomes
        return [
            refusal(o.status_code, o.detail) if o.status_code >= 400 else None for o in outcomes
        ]

    async def release(self, job_id: int, body: JobRelease) -> None:
        await self._call("POST", f"/jobs/{job_id}/release", json=body.model_dump(mode="json"))

    async def push_log(self, job_id: int, body: LogChunk) -> None:
        await self._call("POST", f"/jobs/{job_id}/logs", json=body.model_dump(mode="json"))

    async def enroll(self, join_token: str) -> dict:
        """Exchange a join token for this hostname's own credential (sent with the join
        token instead of the client's own auth)."""
        response = await self._call(
            "POST", "/enroll", json={"hostname": self.hostname}, auth=BearerAuth(join_token)
        )
        return _read_json(response)

    async def renew_credential(self) -> dict:
        """A fresh credential for this worker, in exchange for the current one."""
        response = await self._call("POST", f"/workers/{self.hostname}/credential")
        return _read_json(response)


def _detail(response: httpx.Response) -> object:
    """The ``detail`` of a refusal, or its text when the body is not the API's error shape
    (a proxy's page, a list)."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    return body.get("detail") if isinstance(body, dict) else response.text
