"""Simulated workers: a light HTTP/1.1 client (httpx's CPU per request would make a thousand
simulated workers on two cores the bottleneck; the scripts run them on uvloop for the same
reason), two load shapes, and agents running the worker's own loops."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

from _common import session_cpu, summarize

from edgefleet.auth import Identity
from edgefleet.client_auth import TokenAuth
from edgefleet.contract import API_PREFIX
from support import WaitTimeout, admin_token, async_wait_until

T = TypeVar("T")
#: (method, path, headers, JSON body)
Request = tuple[str, str, dict[str, str], object]
#: Drop idle connections before uvicorn does (its keep-alive timeout is 5 s by default).
KEEPALIVE = 2.0


async def within(predicate: Callable[[], T], timeout: float) -> T | None:
    """``predicate``'s value once truthy, ``None`` when it was not within ``timeout``."""
    with contextlib.suppress(WaitTimeout):
        return await async_wait_until(predicate, timeout=timeout)
    return None


class HttpError(Exception):
    """The connection failed or the answer could not be read."""


class Conn:
    """One keep-alive HTTP/1.1 connection (a reused one that fails is retried once anew)."""

    def __init__(self, port: int, keepalive: float = KEEPALIVE) -> None:
        self.port, self.keepalive, self._idle_since = port, keepalive, 0.0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

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
        data = "".join(f"{line}\r\n" for line in [*head, ""]).encode() + payload
        if self._writer is not None and time.monotonic() - self._idle_since > self.keepalive:
            self.close()
        for retry in (self._writer is not None, False):
            try:
                async with asyncio.timeout(timeout):
                    if self._writer is None:
                        connect = asyncio.open_connection("127.0.0.1", self.port)
                        self._reader, self._writer = await connect
                    self._writer.write(data)
                    status, keep, answer = await self._read()
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:  # timeouts too
                self.close()
                if retry:
                    continue
                raise HttpError(f"{type(exc).__name__}: {exc}") from exc
            except asyncio.CancelledError:  # an answer left unread would be the next one's
                self.close()
                raise
            self._idle_since = time.monotonic()
            if not keep:
                self.close()
            return status, answer
        raise HttpError("unreachable")

    async def _read(self) -> tuple[int, bool, bytes]:
        """An answer with a Content-Length (every JSON answer these servers give)."""
        assert self._reader is not None
        lines = (await self._reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        pairs = (line.split(":", 1) for line in lines[1:] if ":" in line)
        fields = {name.strip().lower(): value.strip() for name, value in pairs}
        answer = await self._reader.readexactly(int(fields.get("content-length", "0")))
        keep = fields.get("connection", "").lower() != "close"
        return int(lines[0].split(" ", 2)[1]), keep, answer


class Pools:
    """Keep-alive connections per replica; request ``index`` goes to replica ``index % n``."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.free: dict[int, list[Conn]] = {port: [] for port in ports}

    def close(self) -> None:
        for conn in itertools.chain(*self.free.values()):
            conn.close()
        self.free = {port: [] for port in self.ports}

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

    async def call(self, request: Request) -> dict:
        """One request's parsed answer; anything but a 2xx raises."""
        return json.loads((await for_all(self, [request], 1))[0] or b"{}")


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


def admin_headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token(secret, subject='bench', ttl=4 * 3600)}"}


@dataclass
class SimWorker:
    """A simulated worker's requests and protocol state; ``token`` gives its bearer token."""

    name: str
    token: Callable[[], str]
    instance: str = field(default_factory=lambda: uuid.uuid4().hex)
    seq: int = 0
    version: int = 0
    concurrency: int = 2

    def _call(self, method: str, action: str, body: object = None, **query: object) -> Request:
        path = f"{API_PREFIX}/edge/workers/{self.name}/{action}"
        path += f"?{urlencode(query)}" if query else ""
        return method, path, {"Authorization": f"Bearer {self.token()}"}, body

    def register(self, queue: str, concurrency: int, interval: float) -> Request:
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

    def watch(self, free_slots: int, timeout: float) -> Request:
        """A long-poll acknowledging the version it holds, as the agent sends it."""
        query = {"instance_id": self.instance, "version": self.version, "free_slots": free_slots}
        ack = {"applied_version": self.version, "applied_concurrency": self.concurrency}
        return self._call("GET", "watch", timeout=timeout, **query, **ack, state="idle")

    def results(self, jobs: list[dict]) -> Request:
        """Every job a ``success``, in one request as the worker's outbox sends them."""
        done = {"instance_id": self.instance, "state": "success", "exit_code": 0}
        results = [{"job_id": j["id"], "attempt": j["attempt"], **done} for j in jobs]
        return self._call("POST", "results", {"results": results})

    def apply(self, answer: bytes) -> dict:
        """The parsed answer; a desired state it carries is adopted at once."""
        reply = json.loads(answer) if answer else {}
        desired = reply.get("desired", {"version": 0})
        if desired["version"] > self.version:
            self.version, self.concurrency = desired["version"], desired["concurrency"]
        return reply


def sim_workers(secret: str, prefix: str, count: int, start: int = 0) -> list[SimWorker]:
    """Workers signing their tokens with the shared secret, as a real worker does."""
    names = [f"{prefix}{i:05d}" for i in range(start, count)]
    return [SimWorker(n, TokenAuth(secret, Identity(n, "worker")).token) for n in names]


class Outcome:
    """One load window: answers, failures, latency, and CPU s per answer (of the servers'
    sessions ``pids``, and of this process)."""

    def __init__(self, pids: Sequence[int] = ()) -> None:
        self.pids, self.latencies, self.failed, self.lat = pids, [], 0, summarize(())
        self.t0, self.cpu0 = time.monotonic(), (session_cpu(*pids), time.process_time())
        self.offered = self.seconds = self.server_cpu = self.client_cpu = math.nan

    def add(self, status: int, since: float) -> None:
        if 200 <= status < 300:
            self.latencies.append(time.monotonic() - since)
        else:
            self.failed += 1

    def close(self, offered: float = math.nan) -> Outcome:
        n, self.seconds = len(self.latencies) or math.nan, time.monotonic() - self.t0
        self.server_cpu = (session_cpu(*self.pids) - self.cpu0[0]) / n
        self.client_cpu, self.offered = (time.process_time() - self.cpu0[1]) / n, offered
        self.lat = summarize(self.latencies)
        return self

    @property
    def answered(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else math.nan


async def closed_loop(
    pools: Pools,
    make: Callable[[int], Request],
    callers: int,
    seconds: float,
    by_caller: bool = False,
    pids: Sequence[int] = (),
) -> Outcome:
    """``callers`` loops sending back to back; ``make`` is given a running count, or with
    ``by_caller`` the loop's index (one simulated worker per loop); ``pids``: servers."""
    window, stop, count = Outcome(pids), time.monotonic() + seconds, itertools.count()

    async def loop(caller: int) -> None:
        while time.monotonic() < stop:
            t0, index = time.monotonic(), caller if by_caller else next(count)
            window.add((await pools.send(caller, make(index)))[0], t0)

    await asyncio.gather(*(loop(i) for i in range(callers)))
    return window.close()


async def open_loop(
    pools: Pools, make: Callable[[int], Request], rate: float, seconds: float
) -> Outcome:
    """Requests at ``rate``/s, latency from the schedule (a stalled server cannot hide its
    queue); unanswered 2 s after the window: failed."""
    window, tasks = Outcome(), set()

    async def one(index: int, due: float) -> None:
        window.add((await pools.send(index, make(index)))[0], due)

    sent = 0
    while (now := time.monotonic()) < window.t0 + seconds:
        while sent < int((now - window.t0) * rate):
            task = asyncio.create_task(one(sent, window.t0 + sent / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(0.002)
    if tasks:
        _, late = await asyncio.wait(set(tasks), timeout=2.0)
        await cancel(late)
        window.failed += len(late)
    return window.close(rate)


@dataclass
class Tally:
    """What a fleet of agents saw; ``arrivals`` and ``last_done`` are wall clock."""

    errors: Counter = field(default_factory=Counter)
    scheduled: int = 0  # heartbeats due
    beats: list[float] = field(default_factory=list)  # answered heartbeats: due -> answer
    arrivals: dict[int, float] = field(default_factory=dict)  # job id -> fetched
    done: set[int] = field(default_factory=set)  # jobs whose success the server took
    last_done: float = math.nan
    waiting: int = 0  # long-polls held now


class Agent:
    """``edgefleet.worker.agent``'s two loops (heartbeats; fetch / long-poll), each on a
    connection of its own; a claimed job is done at once, a new desired state acknowledged on
    the next long-poll (without long-polls: by a heartbeat at once)."""

    def __init__(self, fleet: Fleet, worker: SimWorker, port: int) -> None:
        self.fleet, self.worker = fleet, worker
        self.beat_conn, self.loop_conn = Conn(port, fleet.keepalive), Conn(port)
        self.ack = asyncio.Event()
        self.sent = 0  # the newest applied_version it sent
        self.long_polling = False
        self.again = False  # the last fetch's answer was lost: the same seq again

    @property
    def tally(self) -> Tally:
        return self.fleet.tally

    async def call(self, kind: str, conn: Conn, request: Request, timeout=60.0) -> dict | None:
        try:
            status, answer = await conn.request(request, timeout)
        except HttpError as exc:
            self.tally.errors[f"{kind}: {str(exc).split(':')[0]}"] += 1
            return None
        if status >= 400:
            self.tally.errors[f"{kind}: HTTP {status}"] += 1
            return None
        before = self.worker.version
        reply = self.worker.apply(answer)
        if self.worker.version > before and not self.long_polling:
            self.ack.set()
        return reply

    async def heartbeats(self, until: float = math.inf) -> None:
        """Every interval +-10 % from a random phase; latency counted from the due time."""
        interval = self.fleet.interval
        due = time.monotonic() + random.uniform(0, interval)
        while due < until:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ack.wait(), max(0.0, due - time.monotonic()))
            if self.ack.is_set():
                self.ack.clear()
                due = time.monotonic()
            self.tally.scheduled += 1
            self.sent = self.worker.version
            if await self.call("heartbeat", self.beat_conn, self.worker.heartbeat(), 30):
                self.tally.beats.append(time.monotonic() - due)
            due = max(due + interval * random.uniform(0.9, 1.1), time.monotonic())

    async def dispatch(self, watch: float = 30.0, first: float = 0.0, poll: float = 0.0) -> None:
        """Fetch while work may wait, else a long-poll of ``watch`` s (the first ``first`` s),
        or with ``poll`` a sleep that long."""
        timeout, work, self.long_polling = first or watch, True, not poll
        while not self.fleet.stopping:
            if work and await self.fetch():
                continue
            if poll:
                await asyncio.sleep(poll)
                continue
            self.tally.waiting += 1
            try:
                self.sent = self.worker.version
                request = self.worker.watch(self.fleet.slots, timeout)
                reply = await self.call("watch", self.loop_conn, request, timeout + 30)
            finally:
                self.tally.waiting -= 1
            timeout = watch
            if reply is None:
                await asyncio.sleep(random.uniform(0, 2))
            work = reply is None or reply.get("reason") == "work"
        self.long_polling = False

    async def fetch(self) -> bool:
        request = self.worker.fetch(self.fleet.slots, self.again)
        reply = await self.call("fetch", self.loop_conn, request)
        self.again = reply is None
        jobs = reply["jobs"] if reply else []
        for job in jobs:
            self.tally.arrivals[job["id"]] = time.time()
        if jobs and (
            answer := await self.call("results", self.loop_conn, self.worker.results(jobs))
        ):
            for job, outcome in zip(jobs, answer["outcomes"], strict=True):
                if outcome["status_code"] < 300:
                    self.tally.done.add(job["id"])  # a repeated report (answer lost) counts once
            self.tally.last_done = time.time()
        return bool(jobs)


class Fleet:
    """Agents spread over the replicas, their tasks and ``Tally``; ``pools`` for other calls."""

    def __init__(
        self, ports: list[int], interval: float, slots: int = 2, keepalive: float = KEEPALIVE
    ) -> None:
        self.ports, self.interval, self.slots, self.keepalive = ports, interval, slots, keepalive
        self.pools = Pools(ports)
        self.agents: dict[str, Agent] = {}
        self.tasks: list[asyncio.Task] = []
        self.tally = Tally()
        self.stopping = False  # the dispatch loops end after the request they are on

    async def add(self, workers: Iterable[SimWorker], queue: str) -> list[Agent]:
        """Registered agents, their loops not started."""
        ports, n = self.ports, len(self.agents)
        agents = [Agent(self, w, ports[(n + i) % len(ports)]) for i, w in enumerate(workers)]
        self.agents |= {agent.worker.name: agent for agent in agents}
        requests = [a.worker.register(queue, self.slots, self.interval) for a in agents]
        for agent, answer in zip(agents, await for_all(self.pools, requests), strict=True):
            agent.worker.apply(answer)
        return agents

    def start(self, coros: Iterable[Coroutine[Any, Any, None]]) -> list[asyncio.Task]:
        tasks = [asyncio.create_task(coro) for coro in coros]
        self.tasks += tasks
        return tasks

    async def stop(self, tasks: list[asyncio.Task]) -> None:
        """Dispatch loops end after their request (claimed jobs are not lost), else in 10 s."""
        self.stopping = True
        late = (await asyncio.wait(tasks, timeout=10))[1] if tasks else set()
        await cancel(late)
        self.stopping = False

    async def close(self) -> None:
        await cancel(self.tasks)
        self.pools.close()
        for agent in self.agents.values():
            agent.beat_conn.close()
            agent.loop_conn.close()


async def cancel(tasks: Iterable[asyncio.Task]) -> None:
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
