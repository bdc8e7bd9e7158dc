"""Helpers and fixtures for the job life-cycle and fault-injection tests.

- ``FaultProxy``: a TCP proxy on loopback between workers and the server that can hold all
  traffic (``pause``), reset every connection and refuse new ones (``cut``), or delay it
  (``delay``), to play a flaky or slow site link.
- ``Jobs``: admin API calls the tests need beyond ``support.AdminApi`` (submit with options,
  waits that know the ``cancelled`` state, history).
- ``exactly_once``: the check behind "no job lost, none recorded twice".

Import the fixtures into a test module with
``from jobs_support import jobs_fixture, proxy_fixture  # noqa: F401`` (named ``jobs``, ``proxy``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import AdminApi, JobRecorder, wait_until

FINISHED = frozenset({"success", "failed", "cancelled"})


# --- the network -------------------------------------------------------------------------


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target``, with faults on demand.

    Runs its own event loop in a daemon thread, so synchronous tests can drive it.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._refusing = False
        self._delay = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # --- faults ----------------------------------------------------------------------

    def pause(self) -> None:
        """Hold every byte in both directions (a black hole); connections stay open."""
        self._call(self._set_flowing(False))

    def resume(self) -> None:
        self._call(self._set_flowing(True))

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until ``heal``."""
        self._refusing = True
        self._call(self._drop_all())

    def heal(self) -> None:
        self._refusing = False
        self.resume()

    def drop_connections(self) -> None:
        """Reset what is open now; new connections are accepted (a flap)."""
        self._call(self._drop_all())

    def delay(self, seconds: float) -> None:
        """Hold each piece of data this long before passing it on (a slow link)."""
        self._delay = seconds

    # --- internals -------------------------------------------------------------------

    def _call(self, coroutine) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._drop_all()

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _drop_all(self) -> None:
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                sock = writer.get_extra_info("socket")
                if sock is not None:  # RST rather than FIN: a hard cut
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update({writer, up_writer})
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                if self._delay:
                    await asyncio.sleep(self._delay)
                if writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()


@pytest.fixture(name="proxy")
def proxy_fixture(server) -> Iterator[FaultProxy]:
    """A ``FaultProxy`` in front of the test's ``server``; start workers with
    ``extra_args=("--api-url", proxy.url)`` to put their link through it."""
    port = int(server.url.rsplit(":", 1)[1])
    fault = FaultProxy(port).start()
    yield fault
    fault.close()


# --- the admin API ------------------------------------------------------------------------


class Jobs:
    """The job calls the tests make, over an ``AdminApi``."""

    def __init__(self, api: AdminApi) -> None:
        self.api = api

    def submit(self, command: list[str], **options: Any) -> int:
        body = {"command": command, **options}
        return self.api.call("POST", "/jobs", expect=201, json=body)["id"]

    def get(self, job_id: int) -> dict[str, Any]:
        return self.api.call("GET", f"/jobs/{job_id}")

    def all(self) -> dict[int, dict[str, Any]]:
        return {j["id"]: j for j in self.api.call("GET", "/jobs", params={"limit": 10000})}

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self.api.call("POST", f"/jobs/{job_id}/cancel")

    def log(self, job_id: int) -> str:
        return self.api.call("GET", f"/jobs/{job_id}/logs")["log"]

    def events(self, job_id: int) -> list[str]:
        return [event["event"] for event in self.get(job_id)["history"]]

    def wait_state(self, job_id: int, *states: str, timeout: float = 60.0) -> dict[str, Any]:
        wanted = set(states) or FINISHED
        return wait_until(
            lambda: (view := self.get(job_id))["state"] in wanted and view,
            timeout=timeout,
            interval=0.1,
            message=lambda: f"job {job_id} to be {sorted(wanted)}: {self.get(job_id)}",
        )

    def wait_finished(self, ids: list[int], timeout: float = 120.0) -> dict[int, dict]:
        wanted = set(ids)

        def done() -> dict[int, dict] | None:
            views = {i: v for i, v in self.all().items() if i in wanted}
            finished = len(views) == len(wanted) and all(
                v["state"] in FINISHED for v in views.values()
            )
            return views if finished else None

        def pending() -> str:
            views = self.all()
            left = [(i, views[i]["state"]) for i in ids if views[i]["state"] not in FINISHED]
            return f"unfinished: {left[:20]}"

        return wait_until(done, timeout=timeout, interval=0.2, message=pending)

    def wait_event(self, job_id: int, event: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for ``event`` in the job's history; returns that history entry."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.get(job_id)["history"] if e["event"] == event), None)

        return wait_until(
            found,
            timeout=timeout,
            interval=0.1,
            message=lambda: f"event {event!r} of job {job_id}: {self.events(job_id)}",
        )


@pytest.fixture(name="jobs")
def jobs_fixture(admin_api: AdminApi) -> Jobs:
    return Jobs(admin_api)


# --- checks -------------------------------------------------------------------------------


def exactly_once(recorder: JobRecorder, views: dict[int, dict[str, Any]]) -> None:
    """Every job succeeded, each ran to its end exactly once, with the attempt the server
    recorded: nothing lost, nothing run or recorded twice."""
    runs = recorder.runs()
    finished = [r for r in runs if r.end is not None]
    counts = Counter(r.job for r in finished)
    assert set(counts) == set(views), f"lost: {sorted(set(views) - set(counts))}"
    assert all(n == 1 for n in counts.values()), (
        f"ran twice: {[j for j, n in counts.items() if n > 1]}"
    )
    for run in finished:
        view = views[run.job]
        assert view["state"] == "success", view
        assert (view["attempt"], view["worker"]) == (run.attempt, run.worker), (view, run)


def python_job(code: str) -> list[str]:
    return [sys.executable, "-I", "-c", code]


def spool_files(home: Path, hostname: str) -> list[Path]:
    outbox = home / "spool" / hostname / "outbox"
    return sorted(outbox.glob("*.json")) if outbox.exists() else []


def monotonic_since(start: float) -> float:
    return time.monotonic() - start
