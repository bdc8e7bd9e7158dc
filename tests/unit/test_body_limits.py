"""Request bodies are refused before they are read: 413 past the cap, 401 without a token.

Refusals are checked by calling the ASGI app directly with a ``receive`` that counts what
the app read of the body; the requests that pass go through the whole app (TestClient).
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from pydantic import ValidationError

from edgefleet.contract import DB_INT_MAX, LogChunk, ReportedResult, ResultBatch
from edgefleet.settings import MIN_BODY_BYTES, Settings
from edgefleet.worker.executor import RESULTS_PER_REQUEST
from edgefleet.worker.logs import MAX_CHUNK_CHARS
from support import auth_header, worker_token

#: Refused in the middleware, before any route or the database is reached.
pytestmark = pytest.mark.same_on_every_backend

HEARTBEAT = "/api/v1/edge/workers/w1/heartbeat"
CHUNK = 64 * 1024


class Upload:
    """``receive`` for a direct ASGI call: a body of ``chunks`` chunks of 64 KiB (twice the
    cap unless told), counting how many the app asked for."""

    def __init__(self, chunks: int = 2 * (4 * 1024 * 1024) // CHUNK) -> None:
        self.chunks = chunks
        self.read = 0

    async def __call__(self) -> dict:
        if self.read >= self.chunks:
            return {"type": "http.disconnect"}
        self.read += 1
        more = self.read < self.chunks
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": more}


async def _call(app, method: str, path: str, headers: dict[str, str], upload: Upload):
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, upload, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), json.loads(body)


@pytest.fixture
def token(app_settings) -> dict[str, str]:
    return auth_header(worker_token(app_settings.secret, "w1"))


async def test_a_declared_length_over_the_cap_is_413_unread(app, app_settings, token):
    upload = Upload()
    headers = {**token, "content-length": str(app_settings.max_body_bytes + 1)}
    status, response_headers, body = await _call(app, "POST", HEARTBEAT, headers, upload)
    assert status == 413
    assert body["error"] == "payload_too_large"
    assert str(app_settings.max_body_bytes) in body["detail"]
    assert response_headers[b"connection"] == b"close"
    assert upload.read == 0


async def test_a_chunked_body_is_counted_and_stopped_at_the_cap(app, app_settings, token):
    upload = Upload()
    headers = {**token, "transfer-encoding": "chunked"}
    status, _, body = await _call(app, "POST", HEARTBEAT, headers, upload)
    assert status == 413
    assert body["error"] == "payload_too_large"
    # It read up to the cap and not a chunk further.
    assert upload.read == app_settings.max_body_bytes // CHUNK + 1


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("authorization", [None, "Basic dTpw", "Bearer"])
async def test_a_body_without_a_bearer_token_is_401_unread(app, method, authorization):
    upload = Upload()
    headers = {"content-length": "100"}
    if authorization is not None:
        headers["authorization"] = authorization
    status, response_headers, body = await _call(app, method, "/api/v1/jobs", headers, upload)
    assert status == 401
    assert body["error"] == "unauthorized"
    assert response_headers[b"www-authenticate"] == b"Bearer"
    assert upload.read == 0


def test_a_heartbeat_still_passes_with_a_length_or_chunked(app_client, token):
    instance_id = uuid.uuid4().hex
    registration = {
        "instance_id": instance_id,
        "concurrency": 2,
        "queues": ["default"],
        "heartbeat_interval": 1.0,
        "pid": 4242,
    }
    registered = app_client.post(
        "/api/v1/edge/workers/w1/register", json=registration, headers=token
    )
    assert registered.status_code == 200, registered.text
    version = registered.json()["desired"]["version"]
    beat = {
        "instance_id": instance_id,
        "state": "idle",
        "running_jobs": [],
        "applied_version": version,
        "applied_concurrency": 2,
    }
    response = app_client.post(HEARTBEAT, json=beat, headers=token)
    assert response.status_code == 200, response.text

    encoded = json.dumps(beat).encode()
    streamed = app_client.post(
        HEARTBEAT,
        content=iter([encoded[:10], encoded[10:]]),  # no length: sent chunked
        headers={**token, "content-type": "application/json"},
    )
    assert streamed.status_code == 200, streamed.text
    assert streamed.json()["desired"]["version"] == version


def test_health_and_bodiless_requests_need_no_token_from_the_middleware(app_client):
    assert app_client.get("/api/v1/health").status_code == 200
    # No body: the route's own authentication answers, as before.
    refused = app_client.delete("/api/v1/workers/w1")
    assert refused.status_code == 401
    assert refused.json()["error"] == "unauthorized"


def test_the_cap_cannot_be_set_below_the_largest_worker_message(tmp_path):
    with pytest.raises(ValidationError):
        Settings(home=tmp_path, max_body_bytes=MIN_BODY_BYTES - 1)
    assert Settings(home=tmp_path).max_body_bytes == 4 * 1024 * 1024


def _wire_size(body: dict) -> int:
    """Bytes of the request body the worker's client sends for ``body``."""
    return len(httpx.Request("POST", "http://edgefleet.test", json=body).content)


def test_the_largest_log_chunk_and_result_batch_fit_under_the_smallest_cap():
    # Control characters are the worst case: each is escaped as \\u00XX, six bytes.
    chunk = LogChunk(attempt=1, seq=0, data="\x01" * MAX_CHUNK_CHARS)
    assert _wire_size(chunk.model_dump(mode="json")) < MIN_BODY_BYTES

    result = ReportedResult(
        job_id=DB_INT_MAX,
        instance_id=uuid.uuid4().hex,
        attempt=DB_INT_MAX,
        state="failed",
        exit_code=-(2**31),
        reason="\x01" * 4096,
    )
    batch = ResultBatch(results=[result] * RESULTS_PER_REQUEST)
    assert _wire_size(batch.model_dump(mode="json")) < MIN_BODY_BYTES
