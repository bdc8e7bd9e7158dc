"""The one error tree: each HTTP answer and each transport failure reaches the worker as one
class of ``edgefleet.errors`` (against ``httpx.MockTransport``), and which of them move the
worker to the next replica."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

import httpx
import pytest

from edgefleet.cli.api import ApiError
from edgefleet.contract import Heartbeat, JobRelease, ReportedResult, WorkerState
from edgefleet.errors import (
    ConfigurationError,
    Conflict,
    EdgefleetError,
    Forbidden,
    InvalidRequest,
    NotFound,
    NotRegistered,
    PayloadTooLarge,
    Refused,
    ServerUnavailable,
    TlsFailure,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    refusal,
)
from edgefleet.worker.client import EdgeClient, retry_after

#: What they check does not depend on the database.
pytestmark = pytest.mark.same_on_every_backend

HOST = "edge-1"
SECRET = "s" * 40
A, B = "http://a.test", "http://b.test"

Answer = Callable[[httpx.Request], httpx.Response]
Call = Callable[[EdgeClient], Awaitable[object]]


def heartbeat(client: EdgeClient) -> Awaitable[object]:
    beat = Heartbeat(
        instance_id="i" * 32,
        state=WorkerState.IDLE,
        running_jobs=[],
        applied_version=1,
        applied_concurrency=1,
    )
    return client.heartbeat(beat)


def release(client: EdgeClient) -> Awaitable[object]:
    return client.release(7, JobRelease(instance_id="i" * 32, attempt=1))


def enroll(client: EdgeClient) -> Awaitable[object]:
    return client.enroll("efj_token")


async def raised(answer: Answer, call: Call) -> tuple[Exception, list[str], int]:
    """What ``call`` raises when both replicas answer ``answer``; the hosts asked; the moves."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        return answer(request)

    client = EdgeClient([A, B], HOST, SECRET, httpx.MockTransport(handler))
    try:
        with pytest.raises(EdgefleetError) as caught:
            await call(client)
    finally:
        await client.aclose()
    return caught.value, seen, client.servers.moves


def status(code: int, **headers: str) -> Answer:
    return lambda request: httpx.Response(code, json={"detail": "no"}, headers=headers)


def transport(error: type[httpx.TransportError]) -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        raise error("down", request=request)

    return answer


def untrusted(request: httpx.Request) -> httpx.Response:
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_message = "self-signed certificate"
    raise httpx.ConnectError("TLS", request=request) from cause


# --- refusals: the class the server raised, or what the worker must do ---------------------

REFUSALS = [
    # status, the worker's own calls (heartbeat, watch, fetch, maintenance), other calls
    (400, InvalidRequest, InvalidRequest),
    (401, Unauthorized, Unauthorized),
    (403, Forbidden, Forbidden),
    (404, NotRegistered, NotFound),
    (409, NotRegistered, Conflict),
    (413, PayloadTooLarge, PayloadTooLarge),
    (422, InvalidRequest, InvalidRequest),
    (418, Refused, Refused),
]


@pytest.mark.parametrize(("code", "own_call", "other_call"), REFUSALS)
@pytest.mark.parametrize("call", [heartbeat, release, enroll])
async def test_each_refusal_is_one_class_and_moves_nothing(code, own_call, other_call, call):
    exc, seen, moves = await raised(status(code), call)
    assert type(exc) is (own_call if call is heartbeat else other_call)
    assert (exc.status_code, exc.detail, str(exc)) == (code, "no", f"{code}: no")
    assert (seen, moves) == (["a.test"], 0)  # a refusal is final: no other replica asked


async def test_each_result_of_a_batch_is_answered_with_its_own_class():
    statuses = [204, 400, 403, 404, 409]
    outcomes = [
        {"job_id": n, "attempt": 1, "status_code": s} for n, s in enumerate(statuses, start=1)
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"outcomes": outcomes})

    results = [
        ReportedResult(job_id=n, instance_id="i" * 32, attempt=1, state="success")
        for n in range(1, 6)
    ]
    client = EdgeClient(A, HOST, SECRET, httpx.MockTransport(answer))
    try:
        answers = await client.report_results(results)
    finally:
        await client.aclose()
    assert [type(a) for a in answers] == [
        type(None),
        InvalidRequest,
        Forbidden,
        NotFound,
        Conflict,
    ]


# --- no answer to act on: try again later, on the next replica if the server failed -----

UNAVAILABLE = [
    # answer, class, hosts asked, moves
    (status(429, **{"Retry-After": "7"}), TooManyRequests, ["a.test"], 0),
    (status(500), ServerUnavailable, ["a.test", "b.test"], 2),
    (status(502), ServerUnavailable, ["a.test", "b.test"], 2),
    (status(503), ServerUnavailable, ["a.test", "b.test"], 2),
    (transport(httpx.ConnectError), ServerUnavailable, ["a.test", "b.test"], 2),
    (transport(httpx.ConnectTimeout), ServerUnavailable, ["a.test", "b.test"], 2),
    (transport(httpx.ReadTimeout), ServerUnavailable, ["a.test", "b.test"], 2),
    # a connection that broke under the request is tried once more on a fresh one
    (transport(httpx.ReadError), ServerUnavailable, ["a.test"] * 2 + ["b.test"] * 2, 2),
    (transport(httpx.RemoteProtocolError), ServerUnavailable, ["a.test"] * 2 + ["b.test"] * 2, 2),
    (untrusted, TlsFailure, ["a.test"], 1),
    # an answer that is not the API's (a proxy's page): sent again later, from where it is
    (lambda r: httpx.Response(200, text="<html>"), ServerUnavailable, ["a.test"], 0),
]


@pytest.mark.parametrize(("answer", "cls", "asked", "moves"), UNAVAILABLE)
async def test_each_failure_is_one_class_and_only_a_failed_server_is_left(
    answer, cls, asked, moves
):
    exc, seen, moved = await raised(answer, heartbeat)
    assert type(exc) is cls
    assert isinstance(exc, Unavailable) and not isinstance(exc, Refused)
    assert (seen, moved) == (asked, moves)
    assert retry_after(exc) == (7.0 if cls is TooManyRequests else 0.0)


# --- the tree itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls", [InvalidRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge]
)
def test_a_refusal_the_server_raises_reaches_a_client_as_the_same_class(cls):
    sent = cls("why")
    received = refusal(sent.status_code, sent.message)
    assert type(received) is cls and received.detail == "why"


def test_retrying_and_giving_up_never_overlap():
    """A worker retries ``Unavailable`` and drops what is ``Refused``: no class is both."""
    retried = {TooManyRequests, ServerUnavailable, TlsFailure}
    final = {InvalidRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge}
    assert all(issubclass(c, Unavailable) and not issubclass(c, Refused) for c in retried)
    assert all(
        issubclass(c, Refused) and not issubclass(c, Unavailable) for c in final | {NotRegistered}
    )
    for cls in (ConfigurationError, ApiError, *retried, *final, NotRegistered):
        assert issubclass(cls, EdgefleetError)


def test_a_refusal_whose_body_is_not_the_api_error_shape_keeps_its_text() -> None:
    from edgefleet.worker.client import _detail

    assert _detail(httpx.Response(400, json=["a", "list"])) == '["a","list"]'
    assert _detail(httpx.Response(400, text="<html>proxy</html>")) == "<html>proxy</html>"
    assert _detail(httpx.Response(409, json={"detail": "stale"})) == "stale"
