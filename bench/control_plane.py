"""Fleet control plane at scale: change -> acknowledgement, and job submitted -> job started.

One real ``edgefleet server`` (fresh SQLite database) and ``-n`` simulated workers (default
1000) following ``edgefleet.worker.agent``'s protocol over two keep-alive connections each: a
heartbeat every 30 s (+-10 %, random phase) that goes out at once when a new desired version
was learnt (the ack), and in the long-poll phases a held ``watch`` (30 s; the first one 1..30 s)
with a fetch whenever the answer's reason is ``work``. Phases (``--skip`` any):

1. ``baseline``: PUT concurrency for random workers (2/s for 60 s) and one fleet-wide change,
   heartbeat only: each is acknowledged by the worker's next heartbeat.
2. ``longpoll``: the same at 8/s for 30 s.
3. ``fleetwide``: ``PATCH /workers`` with target ``all`` (``--bursts`` times each way),
   acknowledged by an immediate heartbeat (the agent before) or by carrying
   ``applied_version`` on the next long-poll (today's agent), alternating: the request's time,
   and each worker's acknowledgement as the database records it (``applied_at``). With
   ``--baseline REF``, also against a server running REF's code (``git archive``, on a
   database of its own migrated by this checkout, with a fleet of its own), in turn with
   this checkout's: before and after in one run, under the same load.
4. ``jobs``: POST /jobs returned -> an idle long-polling simulated worker's fetch returned it;
   baseline: as many workers fetching every 5 s.
5. ``real``: one real ``edgefleet worker`` and one with ``--no-long-poll``; POST /jobs
   returned -> the job's process stamped its start (``date +%s.%N``).

    .venv/bin/python bench/control_plane.py            # ~8 min, 1000 workers
    .venv/bin/python bench/control_plane.py --quick    # a smoke run, about a minute
    .venv/bin/python bench/control_plane.py --skip baseline,longpoll,jobs,real \
        --ack long-poll --baseline d10a622                # fleet-wide: before and after
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tarfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from _common import (
    SUMMARY_HEADERS,
    Bench,
    fmt_ms,
    git_state,
    install_signal_exit,
    print_table,
    progress,
    server_errors,
    summarize,
    summary_row,
    verdict,
    wait_for_quiet_host,
)
from _sim import Conn, HttpError, Pools, Request, SimWorker, admin_headers, run_async
from sqlalchemy import Engine, create_engine, select

from edgefleet.contract import API_PREFIX
from edgefleet.db.models import Worker

WATCH_TIMEOUT = 30.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--workers", "-n", type=int, default=1000, help="simulated workers in the fleet")
    add("--skip", default="", help="comma-separated: baseline,longpoll,fleetwide,jobs,real")
    add("--bursts", type=int, help="fleet-wide changes per acknowledgement path (default 5)")
    add("--ack", choices=["both", "heartbeat", "long-poll"], default="both", help="paths to run")
    add("--baseline", metavar="REF", help="fleet-wide: also against a server of REF's code")
    add("--quick", action="store_true", help="200 workers, short phases: a smoke run")
    add("--quiet-host", type=float, metavar="CORES", help="wait until others use fewer cores")
    add("--keep", action="store_true", help="keep the temporary home (database, logs)")
    args = parser.parse_args(argv)
    args.heartbeat_interval, args.poll_interval, args.idle_workers = 30.0, 5.0, 3
    args.baseline_duration, args.baseline_rate = 60.0, 2.0
    args.change_duration, args.change_rate = 30.0, 8.0
    bursts, args.jobs, args.poll_jobs, args.real_jobs = 5, 60, 20, 20
    if args.quick:
        args.workers, args.heartbeat_interval = 200, 10.0
        args.baseline_duration = args.change_duration = 5.0
        bursts, args.jobs, args.poll_jobs, args.real_jobs = 1, 10, 3, 5
    args.bursts = args.bursts or bursts
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    return args


# --- the simulated fleet ------------------------------------------------------------------


class Sim:
    """One simulated worker: ``edgefleet.worker.agent``'s heartbeat and dispatch loops, each
    on a connection of its own. It is always idle: a claimed job is reported done at once."""

    def __init__(self, fleet: Fleet, name: str, queue: str) -> None:
        self.fleet, self.queue = fleet, queue
        self.worker = SimWorker.signing(fleet.secret, name)
        self.beat_conn, self.loop_conn = Conn(fleet.port), Conn(fleet.port)
        self.ack = asyncio.Event()
        self.acks: list[tuple[int, float]] = []  # (applied_version sent, answered at)
        self.watching = False  # its watch loop runs
        self.sent = 0  # the newest applied_version it sent

    @property
    def ack_on_watch(self) -> bool:
        """Whether a new version is acknowledged by the next long-poll (else a heartbeat)."""
        return self.watching and self.fleet.ack_on_watch

    async def call(self, kind: str, conn: Conn, request: Request, timeout=60.0) -> dict | None:
        try:
            status, answer = await conn.request(request, timeout)
        except HttpError as exc:
            self.fleet.errors[f"{kind}: {str(exc).split(':')[0]}"] += 1
            return None
        if status >= 400:
            self.fleet.errors[f"{kind}: HTTP {status}"] += 1
            return None
        before = self.worker.version
        reply = self.worker.apply(answer)
        if self.worker.version > before and not self.ack_on_watch:
            self.ack.set()
        return reply

    async def register(self) -> None:
        request = self.worker.register(self.queue, 2, self.fleet.interval)
        if await self.call("register", self.beat_conn, request) is None:
            raise RuntimeError(f"{self.worker.name}: cannot register")
        self.ack.clear()  # the version it registered with needs no early heartbeat

    async def heartbeat_loop(self) -> None:
        wait = random.uniform(0, self.fleet.interval)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ack.wait(), wait)
            self.ack.clear()
            applied = self.sent = self.worker.version
            if await self.call("heartbeat", self.beat_conn, self.worker.heartbeat()):
                self.acks.append((applied, time.monotonic()))
            wait = self.fleet.interval * random.uniform(0.9, 1.1)

    async def watch_loop(self, first_timeout: float) -> None:
        """Fetch while the server says work may wait, else hold a long-poll."""
        timeout, work = first_timeout, True
        self.watching = True
        while True:
            if work and await self.fetch():
                continue
            self.fleet.waiting += 1
            try:
                request = self.worker.watch(2, timeout, applied=self.ack_on_watch)
                if self.ack_on_watch:
                    self.sent = self.worker.version
                reply = await self.call("watch", self.loop_conn, request, timeout + 30)
            finally:
                self.fleet.waiting -= 1
            timeout = WATCH_TIMEOUT
            if reply is None:
                await asyncio.sleep(random.uniform(0, 2))
            work = reply is not None and reply.get("reason") == "work"

    async def poll_loop(self, interval: float) -> None:
        """The agent without long-poll: fetch, and when nothing came wait ``interval``."""
        while True:
            await asyncio.sleep(interval if not await self.fetch() else 0)

    async def fetch(self) -> bool:
        reply = await self.call("fetch", self.loop_conn, self.worker.fetch(2))
        jobs = reply["jobs"] if reply else []
        for job in jobs:
            self.fleet.arrived(job["id"])
        if jobs:
            await self.call("result", self.loop_conn, self.worker.results(jobs))
        return bool(jobs)


class Fleet:
    def __init__(self, bench: Bench, interval: float) -> None:
        self.secret, self.interval = bench.secret, interval
        self.port = int(bench.api_url.rsplit(":", 1)[1])
        self.sims: dict[str, Sim] = {}
        self.tasks: list[asyncio.Task] = []
        self.errors: Counter = Counter()
        #: New versions acknowledged on the next long-poll (today's agent) rather than by an
        #: immediate heartbeat (the agent before).
        self.ack_on_watch = False
        self.waiting = 0  # watches in flight
        self.arrivals: dict[int, float] = {}
        self.arrival = asyncio.Event()

    async def add(self, names: list[str], queue: str) -> list[Sim]:
        sims = [Sim(self, name, queue) for name in names]
        self.sims.update((sim.worker.name, sim) for sim in sims)
        for start in range(0, len(sims), 20):
            await asyncio.gather(*(sim.register() for sim in sims[start : start + 20]))
        self.start(sim.heartbeat_loop() for sim in sims)
        return sims

    def start(self, coros) -> list[asyncio.Task]:
        tasks = [asyncio.create_task(coro) for coro in coros]
        self.tasks += tasks
        return tasks

    def arrived(self, job_id: int) -> None:
        self.arrivals[job_id] = time.monotonic()
        self.arrival.set()

    async def wait_arrival(self, job_id: int, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while job_id not in self.arrivals and time.monotonic() < deadline:
            self.arrival.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrival.wait(), deadline - time.monotonic())
        return self.arrivals.get(job_id)

    async def wait_watching(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.waiting < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for sim in self.sims.values():
            sim.beat_conn.close()
            sim.loop_conn.close()


# --- the operator's side ------------------------------------------------------------------


def operator_request(
    port: int, headers: dict[str, str], method: str, path: str, body: object
) -> tuple[int, bytes, float, float]:
    """One operator request sent from a process of its own, as the CLI sends it: status,
    body, and the wall-clock times it was sent and answered. Sent from the bench's own event
    loop, a fleet-wide change's time would include that loop's turn at the thousand
    long-poll answers arriving at the same moment."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        sent = time.time()
        connection.request(method, path, json.dumps(body).encode(), headers)
        response = connection.getresponse()
        answer = response.read()
        return response.status, answer, sent, time.time()
    finally:
        connection.close()


@dataclass
class Change:
    hostname: str
    version: int
    sent: float
    returned: float


@dataclass
class Phase:
    name: str
    latencies: list[float | None] = field(default_factory=list)
    burst: list[float | None] = field(default_factory=list)
    #: Fleet-wide changes: how long each request took to return, and the server's CPU
    #: seconds from the request until every worker's acknowledgement was listed.
    requests: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


class Run:
    def __init__(self, args: argparse.Namespace, bench: Bench) -> None:
        self.args, self.bench = args, bench
        self.fleet = Fleet(bench, args.heartbeat_interval)
        self.admin = Pools([self.fleet.port])  # calls may overlap: one connection each
        #: Sends fleet-wide changes (``operator_request``); started with the first one.
        self.operator = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self.headers = admin_headers(bench.secret)
        self.rng = random.Random(1)
        self.phases: list[Phase] = []
        self.fleet_names: list[str] = []
        self.wall = time.time() - time.monotonic()  # monotonic -> wall clock
        self.engine: Engine | None = None  # reads the acknowledgements (``applied``)

    async def call(self, method: str, path: str, body: object) -> tuple[dict | None, float, float]:
        sent = time.monotonic()
        request = (method, f"{API_PREFIX}{path}", self.headers, body)
        status, answer = await self.admin.send(0, request)
        returned = time.monotonic()
        if status not in (200, 201):
            self.fleet.errors[f"{method} {path.split('/')[1]}: {status}"] += 1
            return None, sent, returned
        return json.loads(answer), sent, returned

    @contextlib.asynccontextmanager
    async def phase(self, name: str):
        progress(name)
        phase = Phase(name)
        yield phase
        self.phases.append(phase)

    def acked(self, change: Change) -> float | None:
        for applied, at in self.fleet.sims[change.hostname].acks:
            if applied >= change.version and at >= change.sent:
                return at - change.returned
        return None

    async def settle(self, changes: list[Change], timeout: float) -> list[float | None]:
        """Wait (bounded) until every change is acknowledged; latencies, None for never."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(self.acked(c) is None for c in changes):
            await asyncio.sleep(0.05)
        return [self.acked(c) for c in changes]

    async def put(self, hostname: str) -> Change | None:
        current = self.fleet.sims[hostname].worker.concurrency
        value = self.rng.choice([c for c in range(1, 17) if c != current])
        body, sent, returned = await self.call(
            "PUT", f"/workers/{hostname}/concurrency", {"concurrency": value}
        )
        return body and Change(hostname, body["versions"][hostname], sent, returned)

    async def random_changes(self, duration: float, rate: float) -> list[Change]:
        """Open loop: one PUT every 1/rate s to a random worker without a change pending."""
        start, tasks, pending = time.monotonic(), [], {}
        for i in range(max(1, int(duration * rate))):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            for host, task in list(pending.items()):
                if task.done() and (task.result() is None or self.acked(task.result())):
                    del pending[host]
            name = self.rng.choice(self.fleet_names)
            if name not in pending:
                tasks.append(pending.setdefault(name, asyncio.create_task(self.put(name))))
        return [c for c in await asyncio.gather(*tasks) if c is not None]

    async def fleet_wide(self, phase: Phase, timeout: float) -> None:
        """``set-worker-concurrency --all``: the request's time, and each worker's
        acknowledgement as the database records it (its ``applied_at``) after the return."""
        if self.fleet.waiting:  # long-poll: the fleet back to waiting first
            await self.fleet.wait_watching(len(self.fleet_names), 30)
        change = {"action": "set-concurrency", "concurrency": self.rng.randint(2, 16)}
        body = {"target": {"all": True}, "change": change}
        cpu = process_cpu(self.bench.servers[0].pid)
        headers = self.headers | {"Content-Type": "application/json"}
        args = (self.fleet.port, headers, "PATCH", f"{API_PREFIX}/workers", body)
        loop = asyncio.get_running_loop()
        status, answer, sent, returned = await loop.run_in_executor(
            self.operator, operator_request, *args
        )
        phase.requests.append(returned - sent)
        reply = json.loads(answer) if status == 200 else None
        if reply is None:
            self.fleet.errors[f"PATCH workers: {status}"] += 1
        versions = {
            h: v for h, v in (reply or {}).get("versions", {}).items() if h in self.fleet.sims
        }
        acked = await self.listed_acks(versions, returned, timeout)
        phase.burst += [acked.get(h) for h in versions]
        phase.cpu.append(process_cpu(self.bench.servers[0].pid) - cpu)

    async def listed_acks(
        self, versions: dict[str, int], returned: float, timeout: float
    ) -> dict[str, float]:
        """Seconds from ``returned`` (wall clock) to each worker's acknowledgement of its
        version as the database holds it (``applied_at``, what ``list-workers`` shows). It
        is read from the database file once every worker has sent its acknowledgement (then
        every 0.1 s until all show it): asking the server meanwhile would load the server
        that is being measured."""
        deadline = time.monotonic() + timeout
        sims = self.fleet.sims
        while time.monotonic() < deadline and any(sims[h].sent < v for h, v in versions.items()):
            await asyncio.sleep(0.05)
        acked: dict[str, float] = {}
        while len(acked) < len(versions) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            for hostname, version, at in await asyncio.to_thread(self.applied):
                want = versions.get(hostname)
                if want is not None and version >= want and at is not None:
                    acked[hostname] = at.timestamp() - returned
        return acked

    def applied(self) -> list[tuple[str, int, datetime | None]]:
        """Every worker's acknowledged version and when, read from the database."""
        if self.engine is None:
            self.engine = create_engine(self.bench.db_url)
        query = select(Worker.hostname, Worker.applied_version, Worker.applied_at)
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(query)]

    async def changes(self, name: str, duration: float, rate: float, bursts: int, drain: float):
        async with self.phase(name) as phase:
            phase.latencies = await self.settle(await self.random_changes(duration, rate), drain)
            for _ in range(bursts):
                await self.fleet_wide(phase, drain)

    async def fleet_bursts(self, bursts: int, baseline: Run | None = None) -> None:
        """Fleet-wide changes acknowledged by an immediate heartbeat (the agent before) and
        on the next long-poll (today's), alternating, same server and fleet; and in turn on
        the ``baseline`` server (another code's), acknowledged on the next long-poll."""
        before = Phase("fleet-wide, ack by heartbeat (before)")
        after = Phase("fleet-wide, ack on the next long-poll")
        paths = [(self, before, False), (self, after, True)]
        if self.args.ack != "both":  # one path: against a server without the other, say
            paths = [paths[self.args.ack == "long-poll"]]
        if baseline is not None:
            base = Phase(f"fleet-wide, ack on the next long-poll, code {self.args.baseline}")
            paths.insert(0, (baseline, base, True))
        progress(" / ".join(phase.name for _, phase, _ in paths) + f": {bursts} each")
        for _ in range(bursts):
            for run, phase, on_watch in paths:
                run.fleet.ack_on_watch = on_watch
                await run.fleet_wide(phase, 30)
        self.fleet.ack_on_watch = False
        self.phases += [phase for _, phase, _ in paths]

    async def watching_fleet(self) -> None:
        """The fleet registered and holding long-polls: all a fleet-wide change needs."""
        self.fleet_names = [f"sim-{i:05d}" for i in range(self.args.workers)]
        await self.fleet.add(self.fleet_names, "fleet")
        self.fleet.start(
            self.fleet.sims[n].watch_loop(self.rng.uniform(1.0, WATCH_TIMEOUT))
            for n in self.fleet_names
        )
        await self.fleet.wait_watching(len(self.fleet_names), 60)

    async def sim_jobs(self, name: str, queue: str, count: int, timeout: float) -> None:
        async with self.phase(name) as phase:
            for _ in range(count):
                reply, _, returned = await self.call(
                    "POST", "/jobs", {"command": ["true"], "queue": queue}
                )
                got = await self.fleet.wait_arrival(reply["id"], timeout) if reply else None
                phase.latencies.append(None if got is None else got - returned)
                await asyncio.sleep(0.2 * self.rng.uniform(0.5, 1.5))

    async def real_jobs(self, long_poll: bool) -> None:
        name = "real-lp" if long_poll else "real-poll"
        stamps = self.bench.home / f"{name}.starts"
        flags = ["--poll-interval", str(self.args.poll_interval)]
        flags += [] if long_poll else ["--no-long-poll"]
        args = ["-c", "2", "-q", name, "--heartbeat-interval", "30", *flags]
        await asyncio.to_thread(self.bench.start_worker, name, *args)
        command = ["sh", "-c", f'echo "$EDGEFLEET_JOB_ID $(date +%s.%N)" >> {stamps}']
        label = "real worker, " + ("long-poll" if long_poll else "--no-long-poll")
        async with self.phase(f"{label} (poll {self.args.poll_interval:g} s)") as phase:
            for _ in range(self.args.real_jobs):
                wall = time.time()
                reply, sent, returned = await self.call(
                    "POST", "/jobs", {"command": command, "queue": name}
                )
                returned_wall = wall + (returned - sent)
                deadline = time.monotonic() + 2 * self.args.poll_interval + 10
                start = None
                while reply and start is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                    start = read_stamps(stamps).get(reply["id"])
                phase.latencies.append(None if start is None else start - returned_wall)
                await asyncio.sleep(0.2 * self.rng.uniform(0.5, 1.5))

    async def fleet_bursts_against_baseline(self) -> None:
        """``fleet_bursts``, with a baseline server of ``--baseline``'s code when given."""
        if not self.args.baseline:
            await self.fleet_bursts(self.args.bursts)
            return
        with Bench(self.args.keep) as bench:
            progress(f"baseline: a server of {self.args.baseline} and its fleet")
            src = await asyncio.to_thread(export_src, self.args.baseline, bench.home)
            await asyncio.to_thread(bench.start_server, PYTHONPATH=str(src))
            baseline = Run(self.args, bench)
            try:
                await baseline.watching_fleet()
                await self.fleet_bursts(self.args.bursts, baseline)
            finally:
                await baseline.fleet.close()
                baseline.admin.close()
                baseline.operator.shutdown()
            if errors := server_errors(bench.servers[0]):
                print(f"baseline server logged {len(errors)} error lines: {errors[0][:200]}")

    async def main(self) -> None:
        args, fleet = self.args, self.fleet
        self.fleet_names = [f"sim-{i:05d}" for i in range(args.workers)]
        await fleet.add(self.fleet_names, "fleet")
        drain = 1.1 * args.heartbeat_interval + 5
        if "baseline" not in args.skip:
            await self.changes(
                "heartbeat only", args.baseline_duration, args.baseline_rate, 1, drain
            )
        fleet.start(
            fleet.sims[n].watch_loop(self.rng.uniform(1.0, WATCH_TIMEOUT)) for n in self.fleet_names
        )
        await fleet.wait_watching(len(self.fleet_names), 60)
        if "longpoll" not in args.skip:
            await self.changes("long-poll", args.change_duration, args.change_rate, 0, 30)
        if "fleetwide" not in args.skip:
            await self.fleet_bursts_against_baseline()
        if "jobs" not in args.skip:
            k = args.idle_workers
            idle = await fleet.add([f"idle-lp-{i}" for i in range(k)], "jobs-lp")
            fleet.start(sim.watch_loop(WATCH_TIMEOUT) for sim in idle)
            await asyncio.sleep(1.0)
            await self.sim_jobs(f"{k} idle workers, long-poll", "jobs-lp", args.jobs, 10)
            poll = await fleet.add([f"idle-poll-{i}" for i in range(k)], "jobs-poll")
            polling = fleet.start(sim.poll_loop(args.poll_interval) for sim in poll)
            label, wait = (
                f"{k} idle workers, poll every {args.poll_interval:g} s",
                2 * args.poll_interval,
            )
            await self.sim_jobs(label, "jobs-poll", args.poll_jobs, wait + 5)
            for task in polling:
                task.cancel()
        if "real" not in args.skip:
            await self.real_jobs(long_poll=True)
            await self.real_jobs(long_poll=False)


def export_src(ref: str, home: Path) -> Path:
    """``src/`` of commit ``ref``, unpacked under ``home``: put first on a server's
    PYTHONPATH, it runs that code (this checkout's is installed editable, behind it)."""
    root = Path(__file__).resolve().parent.parent
    archive = home / "baseline.tar"
    subprocess.run(
        ["git", "-C", str(root), "archive", "-o", str(archive), ref, "src"],
        check=True,
        timeout=60,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(home / "baseline", filter="data")
    return home / "baseline" / "src"


def process_cpu(pid: int) -> float:
    """CPU seconds ``pid`` used so far (Linux /proc): a figure that others' load on the
    machine disturbs far less than latencies."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_stamps(path) -> dict[int, float]:
    with contextlib.suppress(FileNotFoundError):
        pairs = (line.split() for line in path.read_text().splitlines())
        return {int(job): float(at) for job, at in pairs}
    return {}


def report(run: Run, args: argparse.Namespace) -> None:
    print(
        f"\nfleet control plane: {args.workers} simulated workers, heartbeat "
        f"{args.heartbeat_interval:g} s; code: {git_state()}"
    )
    phases = {p.name: p for p in run.phases}
    rows = [
        summary_row(
            f"{what}, {p.name}", summarize(p.burst if what == "fleet-wide" else p.latencies)
        )
        for what, keep in (
            ("change", lambda p: p.name in ("long-poll", "heartbeat only")),
            ("fleet-wide", lambda p: p.burst),
            ("job", lambda p: "worker" in p.name),
        )
        for p in run.phases
        if keep(p)
    ]
    rows += [
        summary_row(f"request, {p.name}", summarize(p.requests)) for p in run.phases if p.requests
    ]
    rows += [
        summary_row(f"server CPU s per change, {p.name}", summarize(p.cpu))
        for p in run.phases
        if p.cpu
    ]
    print_table(
        "from the request's return: change -> its ack; fleet-wide -> each worker's ack "
        "(applied_at in the database); request: sent -> returned;\n"
        "job -> started (sim: its fetch returned it, real: the job's own stamp)",
        SUMMARY_HEADERS,
        rows,
    )
    if run.fleet.errors:
        print("client-side errors: " + ", ".join(f"{k} x{v}" for k, v in run.fleet.errors.items()))
    if errors := server_errors(run.bench.servers[0]):
        print(f"server logged {len(errors)} error lines, first: {errors[0][:200]}")
    goals = []
    if lp := phases.get("long-poll"):
        s = summarize(lp.latencies)
        goals.append(
            ["change -> ack p99 < 1 s", fmt_ms(s.p99), verdict(s.p99 < 1 and not s.missed)]
        )
    if fw := phases.get("fleet-wide, ack on the next long-poll"):
        s, r = summarize(fw.burst), summarize(fw.requests)
        ok = s.p99 < 1 and not s.missed
        goals.append(["fleet-wide -> all acked p99 < 1 s", fmt_ms(s.p99), verdict(ok)])
        goals.append(["fleet-wide request p99 < 200 ms", fmt_ms(r.p99), verdict(r.p99 < 0.2)])
    if jobs := phases.get(f"{args.idle_workers} idle workers, long-poll"):
        s = summarize(jobs.latencies)
        goals.append(["job submitted -> fetched p50 < 100 ms", fmt_ms(s.p50), verdict(s.p50 < 0.1)])
    print_table("goals (a sample that never completed fails)", ["goal", "measured", ""], goals)


async def amain(args: argparse.Namespace) -> None:
    random.seed(1)
    await asyncio.to_thread(wait_for_quiet_host, args.quiet_host)
    with Bench(args.keep) as bench:
        bench.start_server()
        run = Run(args, bench)
        try:
            await run.main()
        finally:
            await run.fleet.close()
            run.admin.close()
            run.operator.shutdown()
        report(run, args)


if __name__ == "__main__":
    install_signal_exit()
    sys.exit(run_async(amain(parse_args())))
