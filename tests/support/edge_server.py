"""One scripted edgefleet server for the worker's unit tests.

The worker API answered in process (``httpx.MockTransport(server.handler)``): a test scripts
what the server answers (jobs per fetch, refusals, an outage, join tokens and credentials)
and reads back what it received. Requests are validated against the wire contract on arrival,
so a worker that sends a malformed body fails the test. The outbox's own tests hand their
messages to ``deliver`` instead of going through a client, against the same outage and
refusal script.

Two ways to authenticate, as on a real server: by default any bearer token passes (the
worker signs its own with the shared secret); with ``join_token`` the server issues and
checks per-worker credentials (``live``), and ``/enroll`` exchanges the join token for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from edgefleet.contract import (
    FetchRequest,
    Heartbeat,
    JobRelease,
    JobResult,
    LogChunk,
    Registration,
    ResultBatch,
)
from edgefleet.errors import ServerUnavailable, refusal
from edgefleet.worker.spool import Entry, Kind
from support.api import flag_desired_state

PREFIX = "/api/v1/edge"
#: How long a long-poll (``watch``) is held when nothing changed.
WATCH_HOLD = 0.2


class ScriptedEdgeServer:
    """The worker API for one ``hostname``, scripted by the test.

    Script: ``fetch_answers`` (one ``(jobs, desired_changes)`` per fetch, then no jobs),
    ``refusals`` (action -> statuses, one per call), ``unavailable`` (answer this many
    requests with 503 first), ``down`` (refuse every connection), ``refuse_messages``
    ((kind, job) -> status, for ``deliver``), ``refuse_enroll``, ``join_uses``.
    Record: ``requests`` ((method, path, bearer) of each), ``registrations``,
    ``heartbeats``, ``fetches``, ``results``, ``releases``, ``logs``, ``received`` and
    ``calls`` (the outbox's deliveries and their attempts), ``issued`` credentials.
    """

    def __init__(
        self,
        hostname: str,
        *,
        concurrency: int = 1,
        queues: tuple[str, ...] = ("default",),
        join_token: str | None = None,
        join_uses: int = 1,
        credential_ttl: timedelta = timedelta(days=30),
    ) -> None:
        self.hostname = hostname
        self.desired = {**flag_desired_state(), "concurrency": concurrency, "queues": [*queues]}
        self.changed = asyncio.Event()
        # the script
        self.fetch_answers: list[tuple[list[dict], dict]] = []
        self.refusals: dict[str, list[int]] = {}
        self.unavailable = 0
        self.down = False
        self.refuse_messages: dict[tuple[Kind, int], int] = {}
        self.join_token = join_token
        self.join_uses = join_uses
        self.refuse_enroll: tuple[int, str] | None = None
        self.ttl = credential_ttl
        #: Credentials the server accepts; ``None`` without a join token: any bearer token.
        self.live: set[str] | None = set() if join_token else None
        # the record
        self.requests: list[tuple[str, str, str]] = []
        self.registrations: list[Registration] = []
        self.heartbeats: list[Heartbeat] = []
        self.fetches: list[FetchRequest] = []
        #: (applied_version, applied_concurrency, state) each long-poll carried
        self.watch_acks: list[tuple[int, int, str]] = []
        self.results: dict[int, JobResult] = {}
        self.releases: list[tuple[int, JobRelease]] = []
        self.logs: dict[int, list[LogChunk]] = {}
        self.received: list[tuple[Kind, int, int, dict]] = []
        self.calls = 0
        self.issued = 0

    # --- for the test -----------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def change(self, **fields: Any) -> None:
        """An operator's change: a new desired version (wakes a held long-poll)."""
        self.desired = {**self.desired, **fields, "version": self.desired["version"] + 1}
        self.changed.set()

    def log_text(self, job_id: int) -> str:
        return "".join(c.data for c in sorted(self.logs.get(job_id, []), key=lambda c: c.seq))

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.requests]

    # --- the outbox's way in ----------------------------------------------------------

    async def deliver(self, entry: Entry) -> None:
        """Take one spooled message, as the worker's delivery would: down, refused, or
        received."""
        self.calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise ServerUnavailable("connection refused")
        status = self.refuse_messages.get((entry.kind, entry.job_id))
        if status:
            raise refusal(status, "no")
        self.received.append((entry.kind, entry.job_id, entry.attempt, entry.body))

    # --- the HTTP API -----------------------------------------------------------------

    async def handler(self, request: httpx.Request) -> httpx.Response:
        header = request.headers.get("Authorization", "")
        bearer = header.removeprefix("Bearer ")
        path = request.url.path.removeprefix(PREFIX)
        self.requests.append((request.method, path, bearer))
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.unavailable:
            self.unavailable -= 1
            return httpx.Response(503, json={"detail": "starting"})
        if path == "/enroll":
            return self._enroll(bearer, json.loads(request.content))
        if self.live is None:
            assert header.startswith("Bearer "), f"{path} sent without a token"
        elif bearer not in self.live:
            return httpx.Response(401, json={"detail": "unknown or revoked credential"})
        parts = path.strip("/").split("/")
        if parts[0] == "workers":
            assert parts[1] == self.hostname, path
            return await self._worker_call(parts[2], request)
        if parts[0] == "jobs":
            return self._job_call(int(parts[1]), parts[2], request)
        return httpx.Response(404, json={"error": "not_found", "detail": path})

    def _job_call(self, job_id: int, action: str, request: httpx.Request) -> httpx.Response:
        if action == "release":
            self.releases.append((job_id, JobRelease.model_validate_json(request.content)))
        elif action == "logs":
            self.logs.setdefault(job_id, []).append(LogChunk.model_validate_json(request.content))
        else:
            return httpx.Response(404, json={"error": "not_found", "detail": action})
        return httpx.Response(204)

    async def _worker_call(self, action: str, request: httpx.Request) -> httpx.Response:
        if self.refusals.get(action):
            status = self.refusals[action].pop(0)
            return httpx.Response(status, json={"error": "refused", "detail": f"no {action}"})
        if action == "register":
            self.registrations.append(Registration.model_validate_json(request.content))
        elif action == "heartbeat":
            self.heartbeats.append(Heartbeat.model_validate_json(request.content))
        elif action == "watch":
            params = request.url.params
            if "applied_version" in params:
                version, concurrency = params["applied_version"], params["applied_concurrency"]
                self.watch_acks.append((int(version), int(concurrency), params["state"]))
            await self._hold_watch(int(params["version"]))
        elif action == "results":
            return self._results(ResultBatch.model_validate_json(request.content))
        elif action == "fetch":
            self.fetches.append(FetchRequest.model_validate_json(request.content))
            jobs, changes = self.fetch_answers.pop(0) if self.fetch_answers else ([], {})
            if changes:
                self.change(**changes)
            return httpx.Response(200, json={"jobs": jobs, "desired": self.desired})
        elif action == "credential":
            return self._issue()
        else:
            return httpx.Response(404, json={"error": "not_found", "detail": action})
        body = {"desired": self.desired, "server_time": datetime.now(UTC).isoformat()}
        return httpx.Response(200, json=body)

    async def _hold_watch(self, version: int) -> None:
        if version == self.desired["version"]:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WATCH_HOLD):
                    await self.changed.wait()

    def _results(self, batch: ResultBatch) -> httpx.Response:
        self.results.update((result.job_id, result) for result in batch.results)
        outcomes = [
            {"job_id": r.job_id, "attempt": r.attempt, "status_code": 204} for r in batch.results
        ]
        return httpx.Response(200, json={"outcomes": outcomes})

    def _issue(self) -> httpx.Response:
        assert self.live is not None, "credentials need a server made with a join token"
        self.issued += 1
        credential = f"efw_{self.issued}"
        self.live.add(credential)
        expires = (datetime.now(UTC) + self.ttl).isoformat()
        body = {"hostname": self.hostname, "credential": credential, "expires_at": expires}
        return httpx.Response(201, json=body)

    def _enroll(self, bearer: str, body: dict) -> httpx.Response:
        assert body == {"hostname": self.hostname}
        if self.refuse_enroll is not None:
            status, detail = self.refuse_enroll
            return httpx.Response(status, json={"detail": detail})
        if bearer != self.join_token or self.join_uses < 1:
            return httpx.Response(401, json={"detail": "join token unknown, expired or used up"})
        self.join_uses -= 1
        return self._issue()
