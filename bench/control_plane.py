"""Fleet control plane at scale: change -> acknowledgement, and job submitted -> job started.

One real ``edgefleet server`` process (fresh SQLite DB, random secret, loopback port) and N
simulated workers (default 1000) in this process (asyncio), speaking the worker API as
``edgefleet.worker.agent`` does, over a minimal HTTP/1.1 client with two keep-alive
connections per simulated worker (httpx's per-request CPU cost would make this process the
bottleneck on a small host):

* every simulated worker registers and heartbeats every ``--heartbeat-interval`` (30 s,
  jittered +-10 %, random phase), and on learning a new desired version sets its "ack"
  event, so the next heartbeat goes out at once (the agent's ``_ack`` event);
* long-poll mode: each one also holds ``GET .../watch`` (version, free slots, 30 s) and, as an
  idle worker does, fetches when the answer's reason says work may wait (empty-fetch backoff
  as in the agent). The first
  watch of each asks for a random 1..30 s so the fleet's deadlines are spread as in a steady
  state (``--watch-phase lockstep``: all at once, as after a server restart).

Phases, in this order (the baseline comes first, so no long-poll is ever left behind on the
server while it is measured):

1. baseline (heartbeat only): PUT concurrency for random workers at ``--baseline-rate`` for
   ``--baseline-duration`` s, plus one fleet-wide change; each change is acknowledged by the
   worker's next heartbeat. The phase then drains for up to one heartbeat interval.
2. long-poll: server CPU with the fleet just waiting; PUT concurrency for random workers at
   ``--change-rate`` for ``--change-duration`` s; ``--bursts`` fleet-wide changes
   (POST /workers/actions/set-concurrency {"all": true}).
3. jobs, fleet still long-polling in the background:
   * ``--idle-workers`` dedicated idle simulated workers on their own queue, long-polling;
     jobs submitted one at a time; latency = POST /jobs returned -> a worker's fetch returned
     the job. Baseline: the same number of poll-only workers (fetch every 5 s).
   * one real ``edgefleet worker`` (default flags) and one with ``--no-long-poll``; latency =
     POST /jobs returned -> the job's process stamped its start (``date +%s.%N``).
   * herd: jobs submitted on the queue every fleet worker serves; every waiting long-poll
     wakes. Reported: latency, how many watches and fetches one job causes, how long until
     the fleet is back to waiting, and a control change's ack latency during the herd.

Clocks: everything simulated is timed with ``time.monotonic()`` in this one process; a change
counts as acknowledged when the heartbeat carrying its version has been answered by the
server (so the DB holds it); the final check reads applied_version back via GET /workers.
Real job processes are timed with CLOCK_REALTIME on both sides (same host). This process and
the server share the machine's cores: the loop lag of this process and the server's CPU share
are printed with each phase so a saturated client is not mistaken for a slow server, and
so is the CPU other processes took ("others"; ``--quiet-host`` waits for a calmer host).

What-ifs without touching the code: ``--server-env EDGEFLEET_WATCH_RECHECK=30`` (server
settings), ``--agent-fetch always`` (an agent that fetches after every long-poll answer),
and ``EDGEFLEET_BENCH_SRC=DIR`` (run against another source tree, see ``_common``).

    .venv/bin/python bench/control_plane.py                    # ~8 min, 1000 workers
    .venv/bin/python bench/control_plane.py -n 200 --baseline-duration 30 --skip real,herd
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    LOOPBACK,
    SUMMARY_HEADERS,
    BenchEnv,
    Conn,
    CpuMeter,
    HttpError,
    MachineMeter,
    Markers,
    ServerProcess,
    async_admin_client,
    fmt_ms,
    fmt_ratio,
    git_state,
    job_command,
    new_env,
    parse_server_env,
    print_table,
    raise_nofile,
    run_async,
    start_worker,
    stop_worker,
    summarize,
    summary_row,
    verdict,
    wait_for_quiet_host,
)

from edgefleet.auth import TOKEN_REUSE_SECONDS, Identity, mint_token  # noqa: E402
from edgefleet.contract import API_PREFIX  # noqa: E402

WATCH_TIMEOUT = 30.0
FLEET_QUEUE = "fleet"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--workers", "-n", type=int, default=1000, help="simulated workers in the fleet")
    add("--heartbeat-interval", type=float, default=30.0, help="simulated heartbeat interval")
    add("--baseline-duration", type=float, default=60.0, help="s of changes, heartbeat only")
    add("--baseline-rate", type=float, default=2.0, help="changes per second in the baseline")
    add("--change-duration", type=float, default=30.0, help="s of changes with long-poll")
    add("--change-rate", type=float, default=8.0, help="changes per second with long-poll")
    add("--bursts", type=int, default=2, help="fleet-wide changes with long-poll")
    add("--idle-seconds", type=float, default=10.0, help="s of measuring the waiting fleet")
    add("--idle-workers", type=int, default=3, help="idle workers for the job latency tests")
    add("--jobs", type=int, default=60, help="jobs for the long-poll job latency test")
    add("--poll-jobs", type=int, default=20, help="jobs for the poll-only baseline")
    add("--poll-interval", type=float, default=5.0, help="fetch interval of the baseline")
    add("--real-jobs", type=int, default=20, help="jobs for the real long-poll worker")
    add("--real-poll-jobs", type=int, default=8, help="jobs for the real --no-long-poll worker")
    add("--herd-jobs", type=int, default=5, help="jobs on the queue the whole fleet serves")
    add("--phase-budget", type=float, default=60.0, help="s at most per job test")
    add(
        "--watch-phase",
        choices=["random", "lockstep"],
        default="random",
        help="random: spread the fleet's watch deadlines (steady state); lockstep: all ask"
        " for 30 s at once, as a fleet does that reconnects together (the agent never jitters)",
    )
    add(
        "--agent-fetch",
        choices=["always", "on-wake"],
        default="on-wake",
        help="on-wake: fetch only when the watch's reason says work may wait, as the agent"
        " does; always: fetch after every watch answer (a what-if)",
    )
    add("--skip", default="", help="comma-separated: baseline,longpoll,jobs,real,herd")
    add(
        "--server-env",
        action="append",
        default=[],
        metavar="EDGEFLEET_KEY=VALUE",
        help="a setting for the server only, e.g. EDGEFLEET_WATCH_RECHECK=30 (repeatable)",
    )
    add("--py-spy", metavar="FILE", help="profile the server during the long-poll phase")
    add(
        "--quiet-host",
        type=float,
        metavar="CORES",
        help="first wait (up to 10 min) until other processes use fewer than CORES cores",
    )
    add("--max-runtime", type=float, default=900.0, help="abort the run after this many s")
    add("--keep", action="store_true", help="keep the temporary home (DB, logs)")
    add("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 10000:
        parser.error("--workers must be 1..10000")
    if args.heartbeat_interval <= 0 or args.poll_interval <= 0:
        parser.error("intervals must be positive")
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    return args


# --- simulated workers --------------------------------------------------------------------


@dataclass
class Counters:
    requests: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    woken_for_work: int = 0  # watch answers without a new version


class Sim:
    """One simulated worker, following ``edgefleet.worker.agent.EdgeWorker``'s protocol."""

    def __init__(self, fleet: Fleet, hostname: str, queue: str):
        self.fleet = fleet
        self.hostname = hostname
        self.queue = queue
        # Like the agent: the heartbeat loop and the dispatch loop (fetch, result, watch)
        # each have a connection of their own.
        self.beat_conn = Conn(LOOPBACK, fleet.env.port)
        self.loop_conn = Conn(LOOPBACK, fleet.env.port)
        self.instance_id = uuid.uuid4().hex
        self.version = 0
        self.concurrency = 2
        self.free = 2  # always idle: a claimed job is "run" instantly and reported
        self.ack = asyncio.Event()
        self.acks: list[tuple[int, float]] = []  # (applied_version sent, answered at)
        self._token = ""
        self._token_at = -1e9
        self.tasks: list[asyncio.Task] = []
        self.fetch_seq = 0

    # HTTP -----------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        now = time.monotonic()
        if now - self._token_at > TOKEN_REUSE_SECONDS:  # as the agent's client does
            ident = Identity(subject=self.hostname, role="worker")
            self._token = mint_token(self.fleet.secret, ident)
            self._token_at = now
        return {"Authorization": f"Bearer {self._token}"}

    async def call(
        self,
        kind: str,
        conn: Conn,
        method: str,
        path: str,
        body: dict | None = None,
        params: dict | None = None,
        timeout: float = 60.0,
    ) -> dict | None:
        counters = self.fleet.counters
        counters.requests[kind] += 1
        url = f"{API_PREFIX}/edge{path}" + (f"?{urlencode(params)}" if params else "")
        try:
            status, answer = await conn.request(method, url, self._headers(), body, timeout)
        except HttpError as exc:
            counters.errors[f"{kind}: {str(exc).split(':')[0]}"] += 1
            return None
        if status >= 400:
            counters.errors[f"{kind}: HTTP {status}"] += 1
            return None
        return json.loads(answer) if answer else {}

    def apply(self, desired: dict) -> None:
        if desired["version"] > self.version:
            self.version = desired["version"]
            self.concurrency = desired["concurrency"]
            self.ack.set()

    async def register(self) -> None:
        body = {
            "instance_id": self.instance_id,
            "concurrency": 2,
            "queues": [self.queue],
            "labels": {"bench": "control-plane"},
            "heartbeat_interval": self.fleet.heartbeat_interval,
            "pid": os.getpid(),
        }
        for attempt in range(5):
            contact = await self.call(
                "register", self.beat_conn, "POST", f"/workers/{self.hostname}/register", body
            )
            if contact is not None:
                self.version = contact["desired"]["version"]
                return
            await asyncio.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"{self.hostname}: cannot register")

    # loops ----------------------------------------------------------------------------------

    async def heartbeat_loop(self) -> None:
        interval = self.fleet.heartbeat_interval
        first = True
        while True:
            wait = random.uniform(0, interval) if first else interval * random.uniform(0.9, 1.1)
            first = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ack.wait(), wait)
            self.ack.clear()
            applied = self.version
            body = {
                "instance_id": self.instance_id,
                "state": "idle",
                "running_jobs": [],
                "applied_version": applied,
                "applied_concurrency": self.concurrency,
            }
            contact = await self.call(
                "heartbeat", self.beat_conn, "POST", f"/workers/{self.hostname}/heartbeat", body
            )
            if contact is None:
                continue
            self.acks.append((applied, time.monotonic()))
            self.apply(contact["desired"])

    async def watch_loop(self, take_jobs: bool, first_timeout: float = WATCH_TIMEOUT) -> None:
        """The agent's dispatch loop: fetch while slots are free, else hold a long-poll.

        ``first_timeout`` < 30 s spreads the fleet's watch deadlines (steady state); the agent
        always asks for 30 s, so a fleet that connects at once stays in lockstep.
        """
        empty_streak = 0
        timeout = first_timeout
        wake_for_work = True  # the agent fetches first thing
        while True:
            if take_jobs and (wake_for_work or self.fleet.fetch_always):
                got = await self.fetch()
                if got:
                    empty_streak = 0
                    continue
                empty_streak += 1
                if empty_streak > 1:
                    await asyncio.sleep(min(0.02 * 2**empty_streak, 1.0))
            params = {
                "instance_id": self.instance_id,
                "version": self.version,
                "free_slots": self.free if take_jobs else 0,
                "timeout": timeout,
            }
            asked, timeout = timeout, WATCH_TIMEOUT
            self.fleet.waiting += 1
            sent = time.monotonic()
            try:
                contact = await self.call(
                    "watch",
                    self.loop_conn,
                    "GET",
                    f"/workers/{self.hostname}/watch",
                    params=params,
                    timeout=timeout + 30,
                )
            finally:
                self.fleet.waiting -= 1
            if contact is None:
                await asyncio.sleep(random.uniform(0, 2))
                continue
            before = self.version
            self.apply(contact["desired"])
            reason = contact.get("reason")
            if reason is not None:  # the server says why it answered, as the agent reads it
                wake_for_work = reason == "work"
            else:  # answered early without a new version: work may be waiting
                wake_for_work = self.version == before and time.monotonic() - sent < asked - 0.5
            if wake_for_work:
                self.fleet.counters.woken_for_work += 1

    async def poll_loop(self, interval: float) -> None:
        """The agent without long-poll: fetch, and when nothing came wait ``interval``."""
        await asyncio.sleep(random.uniform(0, interval))
        while True:
            if not await self.fetch():
                await asyncio.sleep(interval)

    async def fetch(self) -> bool:
        self.fetch_seq += 1
        body = {"instance_id": self.instance_id, "free_slots": self.free, "seq": self.fetch_seq}
        path = f"/workers/{self.hostname}/fetch"
        answer = await self.call("fetch", self.loop_conn, "POST", path, body)
        now = time.monotonic()
        if answer is None:
            return False
        self.apply(answer["desired"])
        jobs = answer["jobs"]
        if not jobs:
            self.fleet.counters.requests["fetch (empty)"] += 1
        for job in jobs:
            self.fleet.arrived(job["id"], now, self.hostname)
            result = {
                "instance_id": self.instance_id,
                "attempt": job["attempt"],
                "state": "success",
                "exit_code": 0,
            }
            await self.call("result", self.loop_conn, "POST", f"/jobs/{job['id']}/result", result)
        return bool(jobs)

    def start(self, coro) -> None:
        self.tasks.append(asyncio.create_task(coro))


class Fleet:
    def __init__(self, env: BenchEnv, args: argparse.Namespace) -> None:
        self.env = env
        self.secret = env.secret
        self.heartbeat_interval = args.heartbeat_interval
        self.fetch_always = args.agent_fetch == "always"
        self.counters = Counters()
        self.waiting = 0  # watches in flight
        self.sims: list[Sim] = []
        self.arrivals: dict[int, tuple[float, str]] = {}
        self.arrival = asyncio.Event()

    def add(self, hostname: str, queue: str) -> Sim:
        sim = Sim(self, hostname, queue)
        self.sims.append(sim)
        return sim

    def arrived(self, job_id: int, at: float, hostname: str) -> None:
        self.arrivals[job_id] = (at, hostname)
        self.arrival.set()

    async def wait_arrival(self, job_id: int, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while job_id not in self.arrivals:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.arrival.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrival.wait(), remaining)
        return self.arrivals[job_id][0]

    def snapshot(self) -> Counters:
        c = self.counters
        return Counters(Counter(c.requests), Counter(c.errors), c.woken_for_work)

    async def close(self) -> None:
        tasks = [t for sim in self.sims for t in sim.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sim in self.sims:
            sim.beat_conn.close()
            sim.loop_conn.close()


# --- measurement helpers ------------------------------------------------------------------


class LoopLag:
    """How late this process's event loop wakes a 10 ms sleeper: the client's own delay."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.01)
            self.samples.append(time.monotonic() - start - 0.01)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def take(self) -> list[float]:
        samples, self.samples = self.samples, []
        return samples

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


@dataclass
class Change:
    hostname: str
    version: int
    sent: float
    returned: float


def ack_latency(sim: Sim, change: Change) -> float | None:
    for applied, at in sim.acks:
        if applied >= change.version and at >= change.sent:
            return at - change.returned
    return None


@dataclass
class PhaseResult:
    name: str
    latencies: list[float | None] = field(default_factory=list)
    call_times: list[float] = field(default_factory=list)
    server_cpu: float = float("nan")
    client_cpu: float = float("nan")
    machine: float = float("nan")  # cores busy on the whole host
    lag: list[float] = field(default_factory=list)
    counters: Counters | None = None
    seconds: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


class Bench:
    def __init__(self, args: argparse.Namespace, env: BenchEnv, server: ServerProcess) -> None:
        self.args = args
        self.env = env
        self.server = server
        self.admin = async_admin_client(env)
        self.fleet = Fleet(env, args)
        self.by_name: dict[str, Sim] = {}
        self.lag = LoopLag()
        self.results: list[PhaseResult] = []
        self.rng = random.Random(args.seed)
        self.t_start = time.monotonic()

    # phases -----------------------------------------------------------------------------------

    def begin(self, name: str) -> tuple:
        elapsed = time.monotonic() - self.t_start
        print(f"-- {elapsed:5.0f} s  {name}", file=sys.stderr, flush=True)
        self.lag.take()
        return (
            PhaseResult(name),
            CpuMeter(self.server.pid).start(),
            CpuMeter(os.getpid()).start(),
            self.fleet.snapshot(),
            time.monotonic(),
            MachineMeter().start(),
        )

    def end(self, state, result: PhaseResult | None = None) -> PhaseResult:
        res, server_cpu, client_cpu, before, t0, machine = state
        result = result or res
        result.server_cpu = server_cpu.stop()
        result.client_cpu = client_cpu.stop()
        result.machine = machine.stop()
        result.lag = self.lag.take()
        result.seconds = time.monotonic() - t0
        now = self.fleet.snapshot()
        result.counters = Counters(
            now.requests - before.requests,
            now.errors - before.errors,
            now.woken_for_work - before.woken_for_work,
        )
        self.results.append(result)
        return result

    async def register_fleet(self) -> None:
        n = self.args.workers
        for i in range(n):
            sim = self.fleet.add(f"sim-{i:05d}", FLEET_QUEUE)
            self.by_name[sim.hostname] = sim
        sem = asyncio.Semaphore(20)

        async def one(sim: Sim) -> None:
            async with sem:
                await sim.register()

        t0 = time.monotonic()
        await asyncio.gather(*(one(s) for s in self.fleet.sims))
        print(f"registered {n} workers in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        for sim in self.fleet.sims:
            sim.start(sim.heartbeat_loop())

    async def put_concurrency(self, hostname: str, value: int) -> Change | None:
        sent = time.monotonic()
        try:
            response = await self.admin.put(
                f"/workers/{hostname}/concurrency", json={"concurrency": value}, timeout=20
            )
        except httpx.TransportError as exc:
            self.fleet.counters.errors[f"PUT concurrency: {type(exc).__name__}"] += 1
            return None
        returned = time.monotonic()
        if response.status_code != 200:
            self.fleet.counters.errors[f"PUT concurrency: HTTP {response.status_code}"] += 1
            return None
        body = response.json()
        version = body["versions"][hostname] if "versions" in body else body["desired_version"]
        return Change(hostname, version, sent, returned)

    async def fleet_wide(self, value: int) -> tuple[list[Change], float]:
        sent = time.monotonic()
        try:
            response = await self.admin.post(
                "/workers/actions/set-concurrency",
                json={"all": True, "concurrency": value},
                timeout=60,
            )
        except httpx.TransportError as exc:
            self.fleet.counters.errors[f"POST set-concurrency all: {type(exc).__name__}"] += 1
            return [], float("nan")
        returned = time.monotonic()
        if response.status_code != 200:
            self.fleet.counters.errors[f"POST set-concurrency all: {response.status_code}"] += 1
            return [], float("nan")
        versions = response.json()["versions"]
        changes = [Change(h, v, sent, returned) for h, v in versions.items() if h in self.by_name]
        return changes, returned - sent

    async def random_changes(self, duration: float, rate: float) -> list[Change]:
        """Open loop: one PUT every 1/rate s to a random worker with no change pending."""
        count = max(1, int(duration * rate))
        fleet = [s for s in self.fleet.sims if s.queue == FLEET_QUEUE]
        pending: dict[str, Change] = {}
        tasks: list[asyncio.Task] = []
        start = time.monotonic()

        async def one(sim: Sim) -> Change | None:
            value = self.rng.choice([c for c in range(1, 17) if c != sim.concurrency])
            change = await self.put_concurrency(sim.hostname, value)
            if change is not None:
                pending[sim.hostname] = change
            return change

        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            for host, change in list(pending.items()):
                if ack_latency(self.by_name[host], change) is not None:
                    del pending[host]
            candidates = [
                s for s in self.rng.sample(fleet, min(len(fleet), 8)) if s.hostname not in pending
            ]
            if candidates:
                tasks.append(asyncio.create_task(one(candidates[0])))
        done = await asyncio.gather(*tasks)
        return [c for c in done if c is not None]

    async def settle(self, changes: list[Change], timeout: float) -> list[float | None]:
        """Wait (bounded) until every change is acknowledged; returns latencies (None = never)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(ack_latency(self.by_name[c.hostname], c) is not None for c in changes):
                break
            await asyncio.sleep(0.05)
        return [ack_latency(self.by_name[c.hostname], c) for c in changes]

    def start_watching(self) -> None:
        for sim in self.fleet.sims:
            first = WATCH_TIMEOUT
            if self.args.watch_phase == "random":
                first = self.rng.uniform(1.0, WATCH_TIMEOUT)
            sim.start(sim.watch_loop(take_jobs=True, first_timeout=first))

    async def wait_watching(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.fleet.waiting < count:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    # 1. baseline ----------------------------------------------------------------------------

    async def baseline(self) -> None:
        args = self.args
        state = self.begin("baseline: heartbeat only")
        changes = await self.random_changes(args.baseline_duration, args.baseline_rate)
        burst, call = await self.fleet_wide(self.rng.randint(2, 16))
        drain = 1.1 * args.heartbeat_interval + 5
        single = await self.settle(changes, drain)
        fleet = await self.settle(burst, drain)
        res = self.end(state)
        res.name = "heartbeat only"
        res.latencies = single
        res.call_times = [c.returned - c.sent for c in changes]
        res.extra = {"burst": fleet, "burst_call": call}

    # 2. long-poll ---------------------------------------------------------------------------

    async def longpoll(self) -> None:
        args = self.args
        self.start_watching()
        if not await self.wait_watching(len(self.fleet.sims), 60):
            print(f"warning: only {self.fleet.waiting} watches in flight", file=sys.stderr)
        await asyncio.sleep(2)
        state = self.begin("long-poll: fleet waiting, no changes")
        await asyncio.sleep(args.idle_seconds)
        idle = self.end(state)
        idle.name = "idle fleet (long-poll)"

        if args.py_spy:
            duration = args.change_duration + 5 + 12 * args.bursts
            self.server.profile(args.py_spy, duration)
        state = self.begin("long-poll: random changes")
        changes = await self.random_changes(args.change_duration, args.change_rate)
        single = await self.settle(changes, 30)
        res = self.end(state)
        res.name = "long-poll"
        res.latencies = single
        res.call_times = [c.returned - c.sent for c in changes]

        bursts: list[float | None] = []
        calls = []
        for _ in range(args.bursts):
            await asyncio.sleep(2)
            state = self.begin("long-poll: fleet-wide change")
            burst, call = await self.fleet_wide(self.rng.randint(2, 16))
            lat = await self.settle(burst, 30)
            self.end(state).name = "fleet-wide change (long-poll)"
            bursts.extend(lat)
            calls.append(call)
            await self.wait_watching(len(self.fleet.sims), 30)
        res.extra = {"burst": bursts, "burst_call": max(calls) if calls else float("nan")}

    # 3. jobs --------------------------------------------------------------------------------

    async def admin_get(self, url: str, attempts: int = 3, **kwargs) -> httpx.Response | None:
        """GET with a retry on transport errors (it is idempotent); None if all failed."""
        for attempt in range(attempts):
            try:
                return await self.admin.get(url, **kwargs)
            except httpx.TransportError as exc:
                self.fleet.counters.errors[f"GET {url}: {type(exc).__name__}"] += 1
                await asyncio.sleep(0.5 * (attempt + 1))
        return None

    async def submit(self, queue: str, command: list[str]) -> tuple[int, float, float, float]:
        """POST /jobs; job id -1 if it failed (not retried: it might have been queued)."""
        sent = time.monotonic()
        wall = time.time()
        try:
            response = await self.admin.post(
                "/jobs", json={"command": command, "queue": queue}, timeout=20
            )
        except httpx.TransportError as exc:
            self.fleet.counters.errors[f"POST /jobs: {type(exc).__name__}"] += 1
            return -1, sent, time.monotonic(), wall
        returned = time.monotonic()
        if response.status_code != 201:
            self.fleet.counters.errors[f"POST /jobs: HTTP {response.status_code}"] += 1
            return -1, sent, returned, wall
        return response.json()["id"], sent, returned, wall + (returned - sent)

    async def sim_jobs(
        self, name: str, queue: str, count: int, timeout: float, gap: float
    ) -> PhaseResult:
        state = self.begin(f"jobs: {name}")
        latencies: list[float | None] = []
        calls = []
        budget = time.monotonic() + self.args.phase_budget
        for _ in range(count):
            if time.monotonic() > budget:
                print(f"   {name}: --phase-budget used up", file=sys.stderr)
                break
            job_id, sent, returned, _ = await self.submit(queue, ["true"])
            calls.append(returned - sent)
            got = await self.fleet.wait_arrival(job_id, timeout) if job_id > 0 else None
            latencies.append(None if got is None else got - returned)
            await asyncio.sleep(gap * self.rng.uniform(0.5, 1.5))
        res = self.end(state)
        res.name = name
        res.latencies = latencies
        res.call_times = calls
        return res

    async def jobs(self) -> tuple[PhaseResult | None, PhaseResult | None]:
        args = self.args
        k = args.idle_workers
        lp_queue, poll_queue = "jobs-lp", "jobs-poll"
        lp = [self.fleet.add(f"idle-lp-{i}", lp_queue) for i in range(k)]
        poll = [self.fleet.add(f"idle-poll-{i}", poll_queue) for i in range(k)]
        for sim in lp + poll:
            self.by_name[sim.hostname] = sim
            await sim.register()
            sim.start(sim.heartbeat_loop())
        for sim in lp:
            sim.start(sim.watch_loop(take_jobs=True))
        for sim in poll:
            sim.start(sim.poll_loop(args.poll_interval))
        await asyncio.sleep(1.0)
        lp_res = await self.sim_jobs(f"{k} idle workers, long-poll", lp_queue, args.jobs, 10, 0.2)
        poll_res = None
        if args.poll_jobs:
            poll_res = await self.sim_jobs(
                f"{k} idle workers, poll every {args.poll_interval:g} s",
                poll_queue,
                args.poll_jobs,
                args.poll_interval * 2 + 5,
                0.1,
            )
        for sim in poll:  # stop polling: it is load that the other tests should not see
            for task in sim.tasks:
                task.cancel()
        return lp_res, poll_res

    async def real_jobs(self) -> list[PhaseResult]:
        args = self.args
        out = []
        for long_poll, count in ((True, args.real_jobs), (False, args.real_poll_jobs)):
            if count <= 0:
                continue
            slug = "real-lp" if long_poll else "real-poll"
            markers = Markers(self.env.home / "markers" / slug)
            markers.directory.mkdir(parents=True, exist_ok=True)
            proc = start_worker(
                self.env,
                slug,
                slug,
                2,
                30.0,
                long_poll,
                ["--poll-interval", str(args.poll_interval)],
            )
            name = "real worker, " + (
                "long-poll" if long_poll else f"--no-long-poll (poll {args.poll_interval:g} s)"
            )
            try:
                if not await self.wait_real_worker(slug):
                    print(f"   {name}: did not come up in time, skipped", file=sys.stderr)
                    continue
                await asyncio.sleep(1.0)
                state = self.begin(f"jobs: {name}")
                latencies: list[float | None] = []
                budget = time.monotonic() + args.phase_budget
                for _ in range(count):
                    if time.monotonic() > budget:
                        break
                    job_id, _, _, returned_wall = await self.submit(
                        slug, job_command(markers.directory, 0)
                    )
                    if job_id < 0:
                        latencies.append(None)
                        continue
                    deadline = time.monotonic() + args.poll_interval * 2 + 10
                    while job_id not in markers.scan() and time.monotonic() < deadline:
                        await asyncio.sleep(0.005)
                    start = markers.starts.get(job_id)
                    latencies.append(None if start is None else start[1] - returned_wall)
                    await asyncio.sleep(0.2 * self.rng.uniform(0.5, 1.5))
                res = self.end(state)
                res.name = name
                res.latencies = latencies
                out.append(res)
            finally:
                await asyncio.to_thread(stop_worker, proc, markers, 0)
        return out

    async def wait_real_worker(self, hostname: str, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = await self.admin_get(f"/workers/{hostname}")
            ok = response is not None and response.status_code == 200
            if ok and response.json().get("converged"):
                return True
            await asyncio.sleep(0.2)
        return False

    async def herd(self) -> PhaseResult:
        """Jobs on the queue every fleet worker serves: every waiting long-poll wakes."""
        args = self.args
        n = len([s for s in self.fleet.sims if s.queue == FLEET_QUEUE])
        await self.wait_watching(n, 30)
        state = self.begin("jobs: herd")
        latencies: list[float | None] = []
        settle: list[float | None] = []
        during: list[Change] = []
        budget = time.monotonic() + args.phase_budget
        for _ in range(args.herd_jobs):
            if time.monotonic() > budget:
                break
            job_id, _, returned, _ = await self.submit(FLEET_QUEUE, ["true"])
            if job_id < 0:
                latencies.append(None)
                continue
            await asyncio.sleep(0.05)
            victim = self.rng.choice(self.fleet.sims[:n])
            change = await self.put_concurrency(victim.hostname, self.rng.randint(2, 16))
            if change is not None:
                during.append(change)
            got = await self.fleet.wait_arrival(job_id, 15)
            latencies.append(None if got is None else got - returned)
            ok = await self.wait_watching(n, 20)
            settle.append(time.monotonic() - returned if ok else None)
            await asyncio.sleep(2.0)
        during_lat = await self.settle(during, 30)
        res = self.end(state)
        res.name = f"herd: {n} idle workers share the queue"
        res.latencies = latencies
        res.extra = {"settle": settle, "during": during_lat, "fleet": n}
        return res

    async def verify(self) -> tuple[int, int]:
        """Read the fleet back: how many workers' applied_version lags their desired one."""
        response = await self.admin_get("/workers", timeout=120)
        if response is None or response.status_code != 200:
            return 0, -1
        rows = [r for r in response.json() if r["hostname"] in self.by_name]
        behind = sum(1 for r in rows if r["applied_version"] < r["desired_version"])
        return len(rows), behind


# --- report -------------------------------------------------------------------------------


def lag_p99(res: PhaseResult) -> str:
    return fmt_ms(summarize(res.lag).p99)


def cpu(res: PhaseResult) -> str:
    return "-" if math.isnan(res.server_cpu) else f"{res.server_cpu * 100:.0f}%"


def others(res: PhaseResult) -> str:
    """Cores used by processes other than the server and this one (other users' load)."""
    rest = res.machine - res.server_cpu - res.client_cpu
    return "-" if math.isnan(rest) else f"{max(0.0, rest):.2f}"


def rates(res: PhaseResult) -> str:
    if not res.counters or res.seconds <= 0:
        return "-"
    r = res.counters.requests
    parts = [f"{k} {r[k] / res.seconds:.0f}/s" for k in ("watch", "heartbeat", "fetch") if r[k]]
    return ", ".join(parts) or "-"


def report_changes(bench: Bench, args: argparse.Namespace) -> None:
    results = {r.name: r for r in bench.results}
    base = results.get("heartbeat only")
    lp = results.get("long-poll")
    base_p50 = summarize(base.latencies).p50 if base else float("nan")
    headers = [*SUMMARY_HEADERS, "PUT p50", "srv CPU", "client lag p99", "p50 vs baseline"]
    rows = []
    for res in (lp, base):
        if res is None:
            continue
        s = summarize(res.latencies)
        speed = "baseline" if res is base else fmt_ratio(s.p50, base_p50)
        put = fmt_ms(summarize(res.call_times).p50)
        rows.append(summary_row(res.name, s, put, cpu(res), lag_p99(res), speed))
    if rows:
        print_table("one worker's change: PUT returned -> ack heartbeat answered", headers, rows)
    rows = [
        summary_row(res.name, summarize(res.extra["burst"]), fmt_ms(res.extra["burst_call"]))
        for res in (lp, base)
        if res is not None and "burst" in res.extra
    ]
    if rows:
        print_table(
            "fleet-wide change (POST actions/set-concurrency all): POST returned -> each ack",
            [*SUMMARY_HEADERS, "POST took"],
            rows,
        )
    rows = [
        [
            res.name,
            f"{res.seconds:.0f} s",
            cpu(res),
            f"{res.client_cpu * 100:.0f}%",
            others(res),
            lag_p99(res),
            rates(res),
        ]
        for res in bench.results
    ]
    ncpu = os.cpu_count()
    print_table(
        "load per phase (srv/client CPU: share of one core; others: cores used by other"
        f" processes on this {ncpu}-core host; client lag: this process's event loop)",
        ["phase", "length", "srv CPU", "client CPU", "others", "client lag p99", "requests"],
        rows,
    )


def report_jobs(args: argparse.Namespace, lp_jobs, poll_jobs, real) -> None:
    rows = []
    base_p50 = summarize(poll_jobs.latencies).p50 if poll_jobs else float("nan")
    for res in [lp_jobs, poll_jobs, *real]:
        if res is None:
            continue
        s = summarize(res.latencies)
        speed = fmt_ratio(s.p50, base_p50) if res is not poll_jobs else "baseline"
        rows.append(summary_row(res.name, s, lag_p99(res), speed))
    if rows:
        print_table(
            "job submitted (POST /jobs returned) -> started (sim: fetch returned it; real: the "
            "job process's own stamp)",
            [*SUMMARY_HEADERS, "client lag p99", "p50 vs poll"],
            rows,
        )


def report_herd(args: argparse.Namespace, herd: PhaseResult) -> None:
    s = summarize(herd.latencies)
    settle = summarize(herd.extra["settle"])
    during = summarize(herd.extra["during"])
    jobs = max(1, len(herd.latencies))
    counters = herd.counters or Counters()
    c = counters.requests
    print_table(
        f"herd: {jobs} jobs, one at a time, on the queue all {herd.extra['fleet']}"
        " idle long-polling workers serve",
        ["measure", "p50", "max", "note"],
        [
            ["submitted -> fetched", fmt_ms(s.p50), fmt_ms(s.max), f"missed {s.missed}"],
            [
                "submitted -> fleet waiting again",
                fmt_ms(settle.p50),
                fmt_ms(settle.max),
                f"missed {settle.missed}",
            ],
            ["change ack during the herd", fmt_ms(during.p50), fmt_ms(during.max), f"n={during.n}"],
            [
                "watch answers per job",
                f"{c['watch'] / jobs:.0f}",
                "",
                f"woken for work {counters.woken_for_work / jobs:.0f}",
            ],
            [
                "fetches per job",
                f"{c['fetch'] / jobs:.0f}",
                "",
                f"empty {c['fetch (empty)'] / jobs:.0f}",
            ],
        ],
    )


def report_goals(bench: Bench, args: argparse.Namespace, lp_jobs) -> None:
    errors: Counter = Counter()
    for res in bench.results:
        if res.counters:
            errors.update(res.counters.errors)
    if errors:
        print("\nclient-side errors: " + ", ".join(f"{k} x{v}" for k, v in errors.items()))
    server_errors = bench.server.error_lines()
    if server_errors:
        print(f"server logged {len(server_errors)} error lines, first: {server_errors[0][:200]}")
    lp = next((r for r in bench.results if r.name == "long-poll"), None)
    rows = []
    if lp:
        s = summarize(lp.latencies)
        goal = f"control change -> ack p99 < 1 s ({args.workers} workers)"
        rows.append([goal, fmt_ms(s.p99), verdict(s.p99 < 1.0 and s.missed == 0)])
    if lp_jobs:
        s = summarize(lp_jobs.latencies)
        rows.append(["job submitted -> started p50 < 100 ms", fmt_ms(s.p50), verdict(s.p50 < 0.1)])
        ok = s.p99 < 0.5 and s.missed == 0
        rows.append(["job submitted -> started p99 < 500 ms", fmt_ms(s.p99), verdict(ok)])
    if rows:
        print_table(
            "goals (a sample that never completed fails its goal)",
            ["goal", "measured", "verdict"],
            rows,
        )
    sys.stdout.flush()


def report(bench: Bench, args: argparse.Namespace, lp_jobs, poll_jobs, real, herd) -> None:
    hb = args.heartbeat_interval
    print(f"\nfleet control plane: {args.workers} simulated workers, heartbeat {hb:g} s")
    print(f"server code: {git_state()}")
    if args.server_env:
        print(f"server settings: {' '.join(args.server_env)}")
    print(f"watch deadlines: {args.watch_phase}; simulated agents fetch: {args.agent_fetch}")
    report_changes(bench, args)
    report_jobs(args, lp_jobs, poll_jobs, real)
    if herd is not None:
        report_herd(args, herd)
    report_goals(bench, args, lp_jobs)


# --- main ---------------------------------------------------------------------------------


async def amain(args: argparse.Namespace) -> int:
    random.seed(args.seed)
    raise_nofile(65536)
    await asyncio.to_thread(wait_for_quiet_host, args.quiet_host)
    env = new_env(keep=args.keep)
    server = ServerProcess(env, extra_env=parse_server_env(args.server_env))
    bench = None
    try:
        server.start()
        print(f"server pid {server.pid} on {env.api_url}, home {env.home}", file=sys.stderr)
        bench = Bench(args, env, server)
        bench.lag.start()
        await bench.register_fleet()
        if "baseline" not in args.skip:
            await bench.baseline()
        if "longpoll" not in args.skip:
            await bench.longpoll()
        else:
            bench.start_watching()
        lp_jobs = poll_jobs = herd = None
        real: list[PhaseResult] = []
        if "jobs" not in args.skip:
            lp_jobs, poll_jobs = await bench.jobs()
        if "real" not in args.skip:
            real = await bench.real_jobs()
        if "herd" not in args.skip and args.herd_jobs > 0:
            herd = await bench.herd()
        rows, behind = await bench.verify()
        report(bench, args, lp_jobs, poll_jobs, real, herd)
        print(f"\nread back: {rows} workers via GET /workers, {behind} with applied < desired")
        if args.keep:
            print(f"kept {env.home} (server.log, worker logs, edgefleet.db)")
        return 0
    finally:
        if bench is not None:
            await bench.lag.stop()
            await bench.fleet.close()
            await bench.admin.aclose()
        await asyncio.to_thread(server.stop)
        env.cleanup()


async def guarded(args: argparse.Namespace) -> int:
    """amain() bounded by --max-runtime; SIGINT/SIGTERM cancel it, so its clean-up runs."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await asyncio.wait_for(amain(args), args.max_runtime)
    except TimeoutError:
        print(f"aborted: the run exceeded --max-runtime {args.max_runtime:g} s")
        return 2
    except asyncio.CancelledError:
        print("interrupted", file=sys.stderr)
        return 130


def main() -> None:
    args = parse_args()
    sys.exit(run_async(guarded(args)))


if __name__ == "__main__":
    main()
