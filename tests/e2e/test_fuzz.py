"""Property-based fuzzing of a live server: every operation of its OpenAPI document, called
with valid tokens and with generated values, valid ones and out-of-schema ones.

Required: no answer is a 5xx, and every answer matches the document (its status code is
declared, its body has the declared shape). Runs on whatever database the suite runs on
(SQLite, or PostgreSQL with ``EDGEFLEET_TEST_PG_URL``).

``EDGEFLEET_FUZZ_EXAMPLES`` sets the examples per operation, half of them valid and half
out of schema (default 25: CI's quick profile, where each run draws new ones;
``EDGEFLEET_FUZZ_EXAMPLES=500`` for a thorough run, which also shrinks what fails).
Operations whose bodies may be megabytes (job submits, result batches, log chunks) take a
fifth of that, two at least: generating such bodies is what the time goes on. Most of a
quick run's CPU is fixed (each operation's schemas turned into strategies).
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from edgefleet.contract import API_PREFIX
from support import admin_token, auth_header, worker_token

if TYPE_CHECKING:
    import schemathesis

EXAMPLES = int(os.environ.get("EDGEFLEET_FUZZ_EXAMPLES") or 25)
#: Operations whose examples are costly to generate and send.
HEAVY = {
    "POST /api/v1/jobs",
    "POST /api/v1/jobs/batch",
    "POST /api/v1/edge/jobs/{job_id}/logs",
    "POST /api/v1/edge/workers/{hostname}/results",
}
#: The registered worker whose token the worker API is called with.
WORKER = "fuzz-worker"
TOKEN_TTL = 3600.0


class Fleet:
    """The live server, its tokens, and the worker process the edge routes speak for (a
    fuzzed registration replaces it, so its instance id is followed)."""

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.admin = auth_header(admin_token(secret, ttl=TOKEN_TTL))
        self.worker = auth_header(worker_token(secret, WORKER, ttl=TOKEN_TTL))
        self.instance_id = uuid.uuid4().hex

    def register(self) -> None:
        body = {
            "instance_id": self.instance_id,
            "concurrency": 2,
            "queues": ["default"],
            "heartbeat_interval": 30.0,
            "labels": {"site": "fuzz"},
        }
        path = f"{self.url}{API_PREFIX}/edge/workers/{WORKER}/register"
        response = httpx.post(path, json=body, headers=self.worker, timeout=30)
        assert response.status_code == 200, response.text
        for command in (["true"], ["sh", "-c", "exit 3"]):
            job = {"command": command, "queue": "default"}
            response = httpx.post(f"{self.url}{API_PREFIX}/jobs", json=job, headers=self.admin)
            assert response.status_code == 201, response.text

    def headers_for(self, path: str) -> dict[str, str]:
        return self.worker if path.startswith(f"{API_PREFIX}/edge/") else self.admin

    def aim(self, case: schemathesis.Case, own_instance: bool) -> None:
        """Point a generated call at the live worker process (or not), so the calls reach
        past the instance check into the services."""
        if not own_instance:
            return
        if isinstance(case.body, dict) and "instance_id" in case.body:
            case.body["instance_id"] = self.instance_id
        if isinstance(case.query, dict) and "instance_id" in case.query:
            case.query["instance_id"] = self.instance_id

    def follow(self, case: schemathesis.Case, response: Any) -> None:
        if case.path.endswith("/register") and response.status_code == 200:
            self.instance_id = case.body["instance_id"]


@pytest.fixture
def fleet(server_factory, edgefleet_env: dict[str, str]) -> Fleet:
    # A long-poll holds at most a moment, so watch calls cost no more than the others.
    edgefleet_env["EDGEFLEET_WATCH_TIMEOUT"] = "0.2"
    # Fuzzing is a flood from one token: a 429 answers it correctly but tests nothing else.
    edgefleet_env["EDGEFLEET_RATE_LIMIT"] = "0"
    server = server_factory()
    fleet = Fleet(server.url, edgefleet_env["EDGEFLEET_SECRET"])
    fleet.register()
    return fleet


@pytest.mark.timeout(max(180, EXAMPLES * 20))
def test_no_operation_answers_5xx_or_breaks_its_schema(fleet: Fleet) -> None:
    from support import fuzzing  # schemathesis and hypothesis: only where the fuzzing runs

    operations = fuzzing.operations(fleet.url, fleet.admin)
    assert len(operations) > 20, [op.label for op in operations]
    failures = [
        failure
        for operation in operations
        for mode in fuzzing.MODES
        if (failure := fuzzing.timed(_fuzz_one, fleet, operation, mode)) is not None
    ]
    assert not failures, f"{len(failures)} operations failed:\n\n" + "\n\n".join(failures)


def _fuzz_one(fleet: Fleet, operation: Any, mode: Any) -> str | None:
    """One operation's examples (a fifth for the heavy ones); the first failure, or None."""
    from support import fuzzing

    fixed = {"hostname": WORKER} if operation.path.startswith(f"{API_PREFIX}/edge/") else None
    examples = max(2, EXAMPLES // (10 if operation.label in HEAVY else 2))
    return fuzzing.fuzz(fleet, operation, mode, examples, fixed, shrink=EXAMPLES > 25)
