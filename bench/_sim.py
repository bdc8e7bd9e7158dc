"""Simulated workers: a light HTTP/1.1 client (httpx's CPU per request would make a thousand
simulated workers on two cores the bottleneck), the worker API's requests, two load shapes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

from _common import Summary, summarize

from edgefleet.auth import Identity
from edgefleet.client_auth import TokenAuth
from edgefleet.contract import API_PREFIX
from support import admin_token

T = TypeVar("T")
EDGE = f"{API_PREFIX}/edge"
#: (method, path, headers, JSON body)
Request = tuple[str, str, dict[str, str], object]
#: Drop idle connections before uvicorn does (its keep-alive timeout is 5 s by default).
KEEPALIVE = 2.0


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when installed: the simulated fleet then takes less of the machine."""
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)


class HttpError(Exception):
    """The connection failed or the answer could not be read."""


class Conn:
    """One keep-alive HTTP/1.1 connection, one request at a time. A request on a reused
    connection that fails before any answer is retried once on a new one."""

    def __init__(self, port: int, keepalive: float = KEEPALIVE) -> None:
        self.port, self.keepalive = port, keepalive
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._idle_since = 0.0

    def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._reader = self._writer = None

    async def request(self, request: Request, timeout: float = 60.0) -> tuple[int, bytes]:
        method, path, headers, body = request
        payload = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
        for attempt in (0, 1):
            if self._writer is not None and time.monotonic() - self._idle_since > self.keepalive:
                self.close()
            reused = self._writer is not None
            try:
                async with asyncio.timeout(timeout):
                    if self._writer is None:
                        self._reader, self._writer = await asyncio.open_connection(
                            "127.0.0.1", self.port
                        )
                    self._writer.write(data)
                    status, keep, answer = await self._read()
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                self.close()
                if reused and attempt == 0:
                    continue
                raise HttpError(f"{type(exc).__name__}: {exc}") from exc
            except TimeoutError as exc:
                self.close()
                raise HttpError("timeout") from exc
            if keep:
                self._idle_since = time.monotonic()
            else:
                self.close()
            return status, answer
        raise HttpError("unreachable")

    async def _read(self) -> tuple[int, bool, bytes]:
        assert self._reader is not None
        lines = (await self._reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip()
        if fields.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16):
                chunks.append((await self._reader.readexactly(size + 2))[:-2])
            await self._reader.readexactly(2)
            answer = b"".join(chunks)
        else:
            answer = await self._reader.readexactly(int(fields.get("content-length", "0")))
        keep = fields.get("connection", "").lower() != "close"
        return int(lines[0].split(" ", 2)[1]), keep, answer


class Pools:
    """Keep-alive connections per replica port, taken and given back by concurrent calls;
    request ``index`` goes to replica ``index % replicas``."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.free: dict[int, list[Conn]] = {port: [] for port in ports}

    def close(self) -> None:
        for conns in self.free.values():
            for conn in conns:
                conn.close()
            conns.clear()

    async def send(self, index: int, request: Request) -> tuple[int, bytes]:
        """(status, body); status 0 when the request failed on the way."""
        port = self.ports[index % len(self.ports)]
        conn = self.free[port].pop() if self.free[port] else Conn(port)
        try:
            status, answer = await conn.request(request, timeout=30)
        except HttpError:
            conn.close()
            return 0, b""
        self.free[port].append(conn)
        return status, answer


def admin_headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token(secret, subject='bench', ttl=4 * 3600)}"}


@dataclass
class SimWorker:
    """A simulated worker's identity and protocol state. ``signer`` signs like a real worker
    (one token per ``TOKEN_REUSE_SECONDS``), or sends an enrolled credential."""

    name: str
    signer: Any
    instance: str = field(default_factory=lambda: uuid.uuid4().hex)
    seq: int = 0
    version: int = 0
    concurrency: int = 2

    @classmethod
    def signing(cls, secret: str, name: str) -> SimWorker:
        return cls(name, TokenAuth(secret, Identity(subject=name, role="worker")))

    def _call(self, method: str, action: str, body: object = None, **query: object) -> Request:
        path = f"{EDGE}/workers/{self.name}/{action}" + (f"?{urlencode(query)}" if query else "")
        return method, path, {"Authorization": f"Bearer {self.signer.token()}"}, body

    def register(self, queue: str, concurrency: int = 2, interval: float = 30.0) -> Request:
        body = {"instance_id": self.instance, "concurrency": concurrency, "queues": [queue]}
        return self._call("POST", "register", body | {"heartbeat_interval": interval})

    def heartbeat(self) -> Request:
        body = {"instance_id": self.instance, "state": "idle", "applied_version": self.version}
        return self._call("POST", "heartbeat", body | {"applied_concurrency": self.concurrency})

    def fetch(self, free_slots: int, again: bool = False) -> Request:
        """The next fetch; ``again`` repeats the last ``seq`` (its answer was lost)."""
        self.seq += not again
        body = {"instance_id": self.instance, "free_slots": free_slots, "seq": self.seq}
        return self._call("POST", "fetch", body)

    def watch(self, free_slots: int, timeout: float, applied: bool = False) -> Request:
        """``applied``: carry the acknowledgement of the version it holds, as the agent does."""
        query = {"instance_id": self.instance, "version": self.version, "free_slots": free_slots}
        if applied:
            ack = {"applied_version": self.version, "applied_concurrency": self.concurrency}
            query |= ack | {"state": "idle"}
        return self._call("GET", "watch", timeout=timeout, **query)

    def results(self, jobs: list[dict]) -> Request:
        """Every job reported ``success`` in one request, as a worker's outbox sends results
        that are ready together."""
        done = {"instance_id": self.instance, "state": "success", "exit_code": 0}
        results = [{"job_id": j["id"], "attempt": j["attempt"], **done} for j in jobs]
        return self._call("POST", "results", {"results": results})

    def apply(self, answer: bytes) -> dict:
        """Take the desired state from an answer that carries one; returns the parsed answer.
        A new version is adopted at once (``applied`` on the next heartbeat or long-poll)."""
        reply = json.loads(answer) if answer else {}
        desired = reply.get("desired", {"version": 0})
        if desired["version"] > self.version:
            self.version, self.concurrency = desired["version"], desired["concurrency"]
        return reply


def sim_workers(secret: str, prefix: str, count: int, start: int = 0) -> list[SimWorker]:
    return [SimWorker.signing(secret, f"{prefix}{i:05d}") for i in range(start, count)]


async def for_all(pools: Pools, requests: list[Request], parallel: int = 32) -> list[bytes]:
    """Send every request, ``parallel`` at a time; the answers in order, failures raise."""
    answers: list[bytes] = [b""] * len(requests)
    queue = iter(range(len(requests)))

    async def loop() -> None:
        for index in queue:
            status, answers[index] = await pools.send(index, requests[index])
            if not 200 <= status < 300:
                raise RuntimeError(f"{requests[index][1]}: HTTP {status} {answers[index][:200]}")

    await asyncio.gather(*(loop() for _ in range(parallel)))
    return answers


async def register_all(
    pools: Pools, workers: list[SimWorker], queue: str, slots: int = 2, interval: float = 30.0
) -> None:
    answers = await for_all(pools, [w.register(queue, slots, interval) for w in workers])
    for worker, answer in zip(workers, answers, strict=True):
        worker.apply(answer)


@dataclass
class Outcome:
    """Answered requests of one measurement: rate, latency and failures."""

    offered: float
    answered: int
    failed: int
    seconds: float
    lat: Summary

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else float("nan")


async def closed_loop(
    pools: Pools,
    make: Callable[[int], Request],
    callers: int,
    seconds: float,
    by_caller: bool = False,
) -> Outcome:
    """``callers`` loops, each sending the next request as soon as the last is answered;
    ``make`` is given a running count, or with ``by_caller`` the loop's own index (one
    simulated worker per loop)."""
    latencies: list[float] = []
    failed = counter = 0
    stop = time.monotonic() + seconds

    async def loop(caller: int) -> None:
        nonlocal failed, counter
        while time.monotonic() < stop:
            counter += 1
            t0 = time.monotonic()
            status, _ = await pools.send(caller, make(caller if by_caller else counter))
            if 200 <= status < 300:
                latencies.append(time.monotonic() - t0)
            else:
                failed += 1

    t0 = time.monotonic()
    await asyncio.gather(*(loop(i) for i in range(callers)))
    elapsed = time.monotonic() - t0
    return Outcome(float("nan"), len(latencies), failed, elapsed, summarize(latencies))


async def open_loop(
    pools: Pools, make: Callable[[int], Request], rate: float, seconds: float
) -> Outcome:
    """Requests scheduled at ``rate``/s whatever the answers do, latency counted from the
    schedule (a stalled server cannot hide its queue); unanswered 2 s after the window:
    failed."""
    latencies: list[float] = []
    failed = 0
    tasks: set[asyncio.Task] = set()

    async def one(index: int, due: float) -> None:
        nonlocal failed
        status, _ = await pools.send(index, make(index))
        if 200 <= status < 300:
            latencies.append(time.monotonic() - due)
        else:
            failed += 1

    t0 = time.monotonic()
    sent = 0
    while (now := time.monotonic()) < t0 + seconds:
        while sent < int((now - t0) * rate):
            task = asyncio.create_task(one(sent, t0 + sent / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(0.002)
    if tasks:
        _, late = await asyncio.wait(set(tasks), timeout=2.0)
        for task in late:
            task.cancel()
        failed += len(late)
    elapsed = time.monotonic() - t0
    return Outcome(rate, len(latencies), failed, elapsed, summarize(latencies))
