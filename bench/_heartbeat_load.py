"""One heartbeat load client for two servers: N simulated workers register, then each sends
its next heartbeat as soon as the last was answered, for a fixed time.

The client code is the same for both (httpx async, one keep-alive connection per simulated
worker); a ``Sim`` only says which URL, body and credentials its system's workers send.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
from _common import Summary, summarize
from _edge3 import API_PREFIX, Edge3Deployment
from _sim import SimWorker

#: (method, path, headers, JSON body)
Call = tuple[str, str, dict[str, str], Any]


class Sim(Protocol):
    def register(self) -> Call: ...
    def registered(self, answer: httpx.Response) -> None: ...
    def heartbeat(self) -> Call: ...


class EdgefleetSim:
    """A worker of edgefleet's protocol, signing with the shared secret as a real worker
    does (one token per half minute)."""

    def __init__(self, secret: str, name: str) -> None:
        self.worker = SimWorker.signing(secret, name)

    def register(self) -> Call:
        return self.worker.register("default")

    def registered(self, answer: httpx.Response) -> None:
        self.worker.apply(answer.content)

    def heartbeat(self) -> Call:
        return self.worker.heartbeat()


class Edge3Sim:
    """A worker of the edge3 provider's protocol: register by POST, heartbeat by PATCH on
    ``worker/{name}``, a fresh path-bound token per request as its workers sign them."""

    def __init__(self, deployment: Edge3Deployment, name: str, concurrency: int = 2) -> None:
        self.deployment, self.name = deployment, name
        self.path = f"worker/{name}"
        self.sysinfo = {
            "status": 20,
            "airflow_version": deployment.airflow_version,
            "edge_provider_version": deployment.edge3_version,
            "concurrency": concurrency,
            "free_concurrency": concurrency,
        }

    def _call(self, method: str, state: str) -> Call:
        headers = {"Authorization": self.deployment.token(self.path)}
        body = {"state": state, "jobs_active": 0, "queues": None, "sysinfo": self.sysinfo}
        return method, f"{API_PREFIX}{self.path}", headers, body

    def register(self) -> Call:
        return self._call("POST", "starting")

    def registered(self, answer: httpx.Response) -> None:
        return None

    def heartbeat(self) -> Call:
        return self._call("PATCH", "idle")


@dataclass(frozen=True)
class Outcome:
    """The measured window: answers, latency, and CPU seconds the server and this client
    used in it (per answer, the figure that holds on a busy host)."""

    answered: int
    failed: int
    seconds: float
    lat: Summary
    server_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else float("nan")

    def per_answer(self, cpu: float) -> float:
        return cpu / self.answered if self.answered else float("nan")


def session_cpu(leader: int) -> float:
    """CPU seconds (user + system) of every live process in ``leader``'s session: a server
    and any process it forked (the harness starts each in a session of its own)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == leader:  # field 6 of stat, the session id
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


async def _send(client: httpx.AsyncClient, call: Call) -> httpx.Response:
    method, path, headers, body = call
    return await client.request(method, path, headers=headers, json=body)


def _client(base_url: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0, trust_env=False)


async def _register(client: httpx.AsyncClient, sims: list[Sim], parallel: int = 16) -> None:
    pending = iter(sims)

    async def loop() -> None:
        for sim in pending:
            answer = await _send(client, sim.register())
            if not answer.is_success:
                raise RuntimeError(f"register: HTTP {answer.status_code} {answer.text[:300]}")
            sim.registered(answer)

    await asyncio.gather(*(loop() for _ in range(parallel)))


async def _closed_loop(
    client: httpx.AsyncClient, sims: list[Sim], seconds: float, warmup: float, server: int
) -> Outcome:
    """Every simulated worker heartbeats back to back; answers in the first ``warmup``
    seconds are not counted."""
    latencies: list[float] = []
    failed = 0
    start = time.monotonic()
    counted_from, stop = start + warmup, start + warmup + seconds
    cpu0: list[float] = []

    async def mark() -> None:
        await asyncio.sleep(warmup)
        cpu0.extend((session_cpu(server), time.process_time()))

    async def loop(sim: Sim) -> None:
        nonlocal failed
        while (t0 := time.monotonic()) < stop:
            try:
                ok = (await _send(client, sim.heartbeat())).is_success
            except httpx.HTTPError:
                ok = False
            if t0 >= counted_from:
                if ok:
                    latencies.append(time.monotonic() - t0)
                else:
                    failed += 1

    await asyncio.gather(mark(), *(loop(sim) for sim in sims))
    elapsed = time.monotonic() - counted_from
    server_cpu, client_cpu = session_cpu(server) - cpu0[0], time.process_time() - cpu0[1]
    return Outcome(len(latencies), failed, elapsed, summarize(latencies), server_cpu, client_cpu)


def heartbeat_load(
    base_url: str,
    server: int,
    make_sim: Callable[[str], Sim],
    prefix: str,
    workers: int,
    seconds: float,
    warmup: float,
) -> Outcome:
    """Register ``workers`` simulated workers named ``prefix``N, then measure; ``server`` is
    the pid of the server's session leader."""
    sims = [make_sim(f"{prefix}{i:04d}") for i in range(workers)]

    async def main() -> Outcome:
        async with _client(base_url, workers) as client:
            await _register(client, sims)
            return await _closed_loop(client, sims, seconds, warmup, server)

    return asyncio.run(main())
