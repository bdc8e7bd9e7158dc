"""Server lists: parsing ``--api-url`` / ``EDGEFLEET_API_URL``, and when the worker's and the
CLI's clients move from one replica to the next (against ``httpx.MockTransport``)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from edgefleet.api_urls import ServerList, parse_api_urls
from edgefleet.cli.api import AdminClient, ApiError
from edgefleet.contract import Heartbeat, WorkerState
from edgefleet.errors import (
    NotRegistered,
    ServerUnavailable,
    TlsFailure,
    TooManyRequests,
    Unauthorized,
)
from edgefleet.settings import Settings
from edgefleet.tls import ClientConfigError
from edgefleet.worker.client import EdgeClient
from support import flag_desired_state

#: What they check does not depend on the database.
pytestmark = pytest.mark.same_on_every_backend

HOST = "edge-1"
SECRET = "s" * 40
A, B, C = "http://a.test:8080", "http://b.test:8080", "https://c.test"

# --- parsing ---------------------------------------------------------------------------


def test_urls_come_from_commas_and_repeats_in_order_without_duplicates():
    assert parse_api_urls(f"{A}/, {B}") == [A, B]
    assert parse_api_urls([f"{A},{B}", C, A]) == [A, B, C]
    assert parse_api_urls(A) == [A]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://h:99999", "port 99999 is not between 1 and 65535"),
        ("http://h:0", "port 0 is not between 1 and 65535"),
        (f"{A},h:8080", "bad API URL 'h:8080': give http://HOST:PORT"),
        (f"{A},,{B}", "an empty entry"),
        (f"{A},", "an empty entry"),
        ("", "an empty entry"),
        ("http://h:port", "bad API URL 'http://h:port'"),
    ],
)
def test_a_malformed_entry_anywhere_is_a_one_line_error(value, message):
    with pytest.raises(ClientConfigError, match=message) as refused:
        parse_api_urls(value)
    assert "\n" not in str(refused.value)


# --- rotation --------------------------------------------------------------------------


def test_a_failure_of_the_current_server_moves_to_the_next_and_wraps_around():
    servers = ServerList([A, B, C])
    moved: list[tuple[str, str]] = []
    servers.on_move(lambda old, new: moved.append((old, new)))
    assert servers.current == A
    assert servers.failed(A)
    assert servers.current == B
    assert not servers.failed(A)  # a late failure of a server already left moves nothing
    assert servers.failed(B) and servers.failed(C)
    assert servers.current == A
    assert moved == [(A, B), (B, C), (C, A)]
    assert servers.moves == 3


def test_a_single_server_never_moves():
    servers = ServerList(A)
    assert not servers.failed(A)
    assert (servers.current, servers.moves) == (A, 0)


# --- the worker's client ---------------------------------------------------------------

Answer = Callable[[httpx.Request], httpx.Response]


def contact() -> httpx.Response:
    desired = flag_desired_state()
    return httpx.Response(
        200, json={"desired": desired, "server_time": datetime.now(UTC).isoformat()}
    )


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def replicas(answers: dict[str, Answer], seen: list[str]) -> httpx.MockTransport:
    """Route each request to the answer of its host; note the hosts in ``seen``."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        return answers[request.url.host](request)

    return httpx.MockTransport(handler)


def beat() -> Heartbeat:
    return Heartbeat(
        instance_id="i" * 32,
        state=WorkerState.IDLE,
        running_jobs=[],
        applied_version=1,
        applied_concurrency=1,
    )


@pytest.mark.parametrize(
    "failure",
    [refused, lambda r: httpx.Response(503), lambda r: httpx.Response(500)],
    ids=["refused", "503", "500"],
)
async def test_the_worker_moves_to_the_next_server_within_the_call_and_stays(failure):
    seen: list[str] = []
    transport = replicas({"a.test": failure, "b.test": lambda r: contact()}, seen)
    client = EdgeClient(f"{A},{B}", HOST, SECRET, transport)
    try:
        await client.heartbeat(beat())
        assert client.api_url == B
        await client.heartbeat(beat())
    finally:
        await client.aclose()
    assert seen[-3:] == ["a.test", "b.test", "b.test"]


async def test_all_servers_down_is_an_outage_after_trying_each_once():
    seen: list[str] = []
    client = EdgeClient(
        [A, B], HOST, SECRET, replicas({"a.test": refused, "b.test": refused}, seen)
    )
    try:
        with pytest.raises(ServerUnavailable, match="b.test"):
            await client.heartbeat(beat())
    finally:
        await client.aclose()
    assert sorted(set(seen)) == ["a.test", "b.test"]
    assert client.api_url == A  # moved on from b too: the next call starts with a again


@pytest.mark.parametrize(
    ("status", "raised"),
    [(404, NotRegistered), (409, NotRegistered), (401, Unauthorized), (429, TooManyRequests)],
)
async def test_a_refusal_or_rate_limit_moves_nothing(status, raised):
    seen: list[str] = []
    answers = {"a.test": lambda r: httpx.Response(status, json={"detail": "no"})}
    client = EdgeClient([A, B], HOST, SECRET, replicas(answers, seen))
    try:
        with pytest.raises(raised):
            await client.heartbeat(beat())
    finally:
        await client.aclose()
    assert (seen, client.api_url, client.servers.moves) == (["a.test"], A, 0)


def untrusted(request: httpx.Request) -> httpx.Response:
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_message = "self-signed certificate"
    raise httpx.ConnectError("TLS", request=request) from cause


async def test_a_certificate_that_fails_verification_stops_the_start_on_any_server():
    answers = {"a.test": lambda r: httpx.Response(200, json={}), "c.test": untrusted}
    client = EdgeClient([A, C], HOST, SECRET, replicas(answers, []))
    try:
        with pytest.raises(TlsFailure, match=r"cannot verify https://c.test.*self-signed"):
            await client.check_server()
    finally:
        await client.aclose()


async def test_the_worker_starts_on_the_first_server_that_answers():
    answers = {"a.test": refused, "b.test": lambda r: httpx.Response(200, json={})}
    client = EdgeClient([A, B], HOST, SECRET, replicas(answers, []))
    try:
        await client.check_server()
        assert (client.api_url, client.servers.moves) == (B, 0)
    finally:
        await client.aclose()


# --- the CLI's client ------------------------------------------------------------------


def admin(answers: dict[str, Answer], seen: list[str]) -> AdminClient:
    settings = Settings(secret=SECRET, api_url=f"{A},{B}")
    return AdminClient(settings, replicas(answers, seen))


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


def broken_after_sending(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("server disconnected", request=request)


@pytest.mark.parametrize(
    "failure",
    [refused, broken_after_sending, lambda r: httpx.Response(500)],
    ids=["refused", "disconnected", "500"],
)
def test_the_cli_reads_from_the_next_server(failure):
    seen: list[str] = []
    client = admin({"a.test": failure, "b.test": ok}, seen)
    assert client.get("/workers") == {"ok": True}
    assert seen == ["a.test", "b.test"]
    assert client.base_url == B


@pytest.mark.parametrize(
    "failure", [refused, lambda r: httpx.Response(503)], ids=["refused", "503"]
)
def test_the_cli_sends_a_change_elsewhere_only_if_the_first_server_did_not_take_it(failure):
    seen: list[str] = []
    client = admin({"a.test": failure, "b.test": ok}, seen)
    assert client.post("/jobs", json={"command": ["true"]}) == {"ok": True}
    assert seen == ["a.test", "b.test"]


@pytest.mark.parametrize(
    ("failure", "message"),
    [(broken_after_sending, "server disconnected"), (lambda r: httpx.Response(500), "500")],
    ids=["disconnected", "500"],
)
def test_the_cli_never_submits_twice(failure, message):
    """A server that may have queued the job before failing: the command fails instead of
    queueing a second copy elsewhere."""
    seen: list[str] = []
    client = admin({"a.test": failure, "b.test": ok}, seen)
    with pytest.raises(ApiError, match=message):
        client.post("/jobs", json={"command": ["true"]})
    assert seen == ["a.test"]


def test_the_cli_names_the_last_server_when_none_answers():
    seen: list[str] = []
    client = admin({"a.test": refused, "b.test": refused}, seen)
    with pytest.raises(ApiError, match="cannot reach the edgefleet server at http://b.test"):
        client.get("/workers")
    assert seen == ["a.test", "b.test"]
