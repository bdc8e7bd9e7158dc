"""The worker's cached desired state: what it writes, what it refuses to read, and that a
failed write leaves the previous cache whole."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from edgefleet.contract import DesiredState
from edgefleet.worker import desired_cache
from edgefleet.worker.agent import EdgeWorker, WorkerConfig
from edgefleet.worker.client import EdgeClient
from edgefleet.worker.desired_cache import DesiredCache, desired_path
from edgefleet.worker.statefile import read_state
from support import async_wait_until

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

HOST = "cache-edge"
AGENT_LOG = "edgefleet.worker.agent"


def desired(**fields) -> DesiredState:
    values = {
        "version": 7,
        "concurrency": 3,
        "concurrency_source": "operator",
        "queues": ["default", "gpu"],
        "maintenance": True,
        "maintenance_comment": "new firmware",
        "shutdown": False,
    }
    return DesiredState(**{**values, **fields})


@pytest.fixture
def cache(tmp_path) -> DesiredCache:
    return DesiredCache(desired_path(tmp_path, HOST))


def test_the_cache_lives_in_the_workers_state_directory(tmp_path):
    assert desired_path(tmp_path, HOST) == tmp_path / "workers" / HOST / "desired.json"


def test_a_saved_state_reads_back_the_same(cache):
    assert cache.load() is None  # nothing cached yet
    assert cache.save(desired())
    assert cache.load() == desired()
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.path.parent.stat().st_mode) == 0o700

    later = desired(version=8, concurrency=2, maintenance=False, maintenance_comment=None)
    assert cache.save(later)
    assert cache.load() == later
    assert [p.name for p in cache.path.parent.iterdir()] == ["desired.json"]  # no temp left


def test_a_shutdown_order_is_not_carried_into_the_next_process(cache):
    cache.save(desired(shutdown=True))
    assert cache.load() == desired(shutdown=False)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"[]",
        b'{"version": 7}',
        # Each well formed, but outside the bounds a server could have sent.
        desired().model_dump_json().replace('"concurrency":3', '"concurrency":0').encode(),
        desired().model_dump_json().replace('"concurrency":3', '"concurrency":"3"').encode(),
        desired().model_dump_json().replace('["default","gpu"]', "[]").encode(),
        desired().model_dump_json().replace('"version":7', '"version":-1').encode(),
    ],
)
def test_a_damaged_cache_is_ignored_with_a_warning(cache, content, caplog):
    cache.path.parent.mkdir(parents=True)
    cache.path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger=desired_cache.__name__):
        assert cache.load() is None
    assert "ignoring it" in caplog.text
    assert str(cache.path) in caplog.text


def test_an_unreadable_cache_is_ignored_with_a_warning(cache, caplog):
    cache.path.mkdir(parents=True)  # a directory where the file should be: read fails
    with caplog.at_level(logging.WARNING, logger=desired_cache.__name__):
        assert cache.load() is None
    assert "cannot read" in caplog.text


def test_a_write_that_fails_keeps_the_previous_cache_whole(cache, monkeypatch, caplog):
    cache.save(desired())

    def crash(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with caplog.at_level(logging.WARNING, logger=desired_cache.__name__):
        assert not cache.save(desired(version=8, concurrency=5))
    monkeypatch.undo()
    assert "cannot cache" in caplog.text
    assert cache.load() == desired()
    assert [p.name for p in cache.path.parent.iterdir()] == ["desired.json"]


def test_a_state_directory_that_cannot_be_made_is_a_warning(tmp_path, caplog):
    (tmp_path / "workers").write_text("a file, not a directory")
    cache = DesiredCache(desired_path(tmp_path, HOST))
    with caplog.at_level(logging.WARNING, logger=desired_cache.__name__):
        assert not cache.save(desired())
    assert "cannot cache" in caplog.text


# --- the worker's use of it ------------------------------------------------------------


class ComingBackServer:
    """Unreachable until ``up``; then answers every worker call with ``desired``."""

    def __init__(self, desired: DesiredState) -> None:
        self.up = False
        self.desired = desired
        self.registrations = 0

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            raise httpx.ConnectError("connection refused", request=request)
        action = request.url.path.rsplit("/", 1)[-1]
        if action == "register":
            self.registrations += 1
        desired = self.desired.model_dump(mode="json")
        if action == "fetch":
            return httpx.Response(200, json={"jobs": [], "desired": desired})
        now = datetime.now(UTC).isoformat()
        return httpx.Response(200, json={"desired": desired, "server_time": now})


@contextlib.asynccontextmanager
async def running_worker(home, server: ComingBackServer) -> AsyncIterator[EdgeWorker]:
    """A worker of ``HOST`` reaching ``server``; stopped (and awaited) on the way out."""
    config = WorkerConfig(
        hostname=HOST,
        concurrency=1,
        queues=["default"],
        home=home,
        api_url="http://edgefleet.test",
        heartbeat_interval=0.2,
        poll_interval=0.05,
        long_poll=False,
    )
    transport = httpx.MockTransport(server.handler)
    client = EdgeClient(config.api_url, HOST, "s" * 40, transport=transport)
    worker = EdgeWorker(config, client)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.request_stop()
        async with asyncio.timeout(15):
            await task
        await client.aclose()


async def test_a_worker_starts_on_its_cache_until_the_server_answers(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=AGENT_LOG)
    DesiredCache(desired_path(tmp_path, HOST)).save(desired(maintenance=False))
    server = ComingBackServer(desired(version=2, concurrency=1, concurrency_source="flag"))
    async with running_worker(tmp_path, server) as worker:
        local = await async_wait_until(lambda: read_state(tmp_path, HOST), timeout=10)
        assert (local["concurrency"], local["concurrency_source"], local["cached"]) == (
            3,
            "operator",
            True,
        )
        assert local["queues"] == ["default", "gpu"]
        assert worker.limiter.limit == 3

        server.up = True
        await async_wait_until(lambda: not read_state(tmp_path, HOST)["cached"], timeout=30)
        local = read_state(tmp_path, HOST)
        assert (local["concurrency"], local["concurrency_source"]) == (1, "flag")
        assert worker.limiter.limit == 1
        # The server's word replaced the cache, though its version is older.
        assert DesiredCache(desired_path(tmp_path, HOST)).load() == server.desired
    assert server.registrations == 1
    # The log says where each value came from: the cache at start, then the server.
    assert "from 1 to 3 from its cached desired state (operator)" in caplog.text
    assert "from 3 to 1 by remote request (flag)" in caplog.text


async def test_an_operators_value_ends_on_time_while_the_server_is_out_of_reach(tmp_path, caplog):
    """The cached override gives way to the layer below at its end, with no server to say
    so; a restart after that end starts on the layer below at once."""
    caplog.set_level(logging.INFO, logger=AGENT_LOG)
    until = datetime.now(UTC) + timedelta(seconds=2)
    ending = desired(concurrency_until=until, concurrency_after=5, maintenance=False)
    DesiredCache(desired_path(tmp_path, HOST)).save(
        ending.model_copy(update={"concurrency_after_source": "fleet-default"})
    )

    def in_force(worker: EdgeWorker) -> tuple | None:
        local = read_state(tmp_path, HOST) or {}
        if local.get("instance_id") != worker.instance_id:
            return None  # the previous process's file
        keys = ("concurrency", "concurrency_source", "concurrency_until", "cached")
        return (*(local[key] for key in keys), worker.limiter.limit)

    handed_back = (5, "fleet-default", None, True, 5)
    ended = "as the operator's value ended (fleet-default)"
    for _ in range(2):
        caplog.clear()
        server = ComingBackServer(desired(version=2, concurrency=1, concurrency_source="flag"))
        async with running_worker(tmp_path, server) as worker:
            if datetime.now(UTC) < until:
                first = await async_wait_until(lambda w=worker: in_force(w), timeout=10)
                if first != handed_back:  # (a slow start may see the end come first)
                    assert first == (3, "operator", until.isoformat(), True, 3)
            await async_wait_until(lambda w=worker: in_force(w) == handed_back, timeout=10)
        assert server.registrations == 0
        assert "by remote request" not in caplog.text  # no server ever answered
        assert ended in caplog.text
    # The restart came after the end: the cache was handed back as it was adopted.
    assert f"from 1 to 5 from its cached desired state, {ended}" in caplog.text
