"""Fleet control plane at scale: change -> acknowledgement, and job submitted -> job started.

One real ``edgefleet server`` (fresh SQLite database) and ``-n`` simulated workers (default
1000, ``_sim.Agent``): a heartbeat every 30 s that goes out at once when a new desired version
was learnt (the ack), and from the second phase on a held ``watch`` (30 s; the first one
1..30 s) with a fetch whenever its answer's reason is ``work``. Phases (``--phases``):

1. ``baseline``: PUT concurrency for random workers (2/s for 60 s) and one fleet-wide change,
   heartbeat only: each is acknowledged by the worker's next heartbeat.
2. ``longpoll``: the same at 8/s for 30 s, the fleet long-polling.
3. ``fleetwide``: ``PATCH /workers`` with target ``all`` (``--bursts`` times each way),
   acknowledged by an immediate heartbeat (the agent before) or by carrying
   ``applied_version`` on the next long-poll (today's agent), alternating: the request's time,
   the server's CPU, and each worker's acknowledgement as the database records it
   (``applied_at``). With ``--baseline REF``, also against a server running REF's code (on a
   database of its own, with a fleet of its own), in turn with this checkout's.
4. ``jobs``: POST /jobs returned -> an idle long-polling simulated worker's fetch returned it;
   baseline: as many workers fetching every 5 s.
5. ``real``: one real ``edgefleet worker`` and one with ``--no-long-poll``; POST /jobs
   returned -> the job's process stamped its start (``date +%s.%N``).

    .venv/bin/python bench/control_plane.py            # ~8 min, 1000 workers
    .venv/bin/python bench/control_plane.py --quick    # a smoke run, about a minute
    .venv/bin/python bench/control_plane.py --phases fleetwide --ack long-poll --baseline REF
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import multiprocessing
import random
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from _common import (
    SUMMARY_HEADERS,
    Bench,
    git_state,
    install_signal_exit,
    print_table,
    progress,
    session_cpu,
    summary_row,
)
from _sim import Fleet, Pools, admin_headers, run_async, within
from sqlalchemy import create_engine, select

from edgefleet.contract import API_PREFIX
from edgefleet.db.models import Worker

PHASES = ("baseline", "longpoll", "fleetwide", "jobs", "real")
WATCH, POLL, IDLE = 30.0, 5.0, 3  # long-poll timeout, the poll baseline, idle workers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--workers", "-n", type=int, default=1000, help="simulated workers in the fleet")
    add("--phases", default=",".join(PHASES), help=f"comma-separated: {','.join(PHASES)}")
    add("--bursts", type=int, help="fleet-wide changes per acknowledgement path (default 5)")
    add("--ack", choices=["both", "heartbeat", "long-poll"], default="both", help="paths to run")
    add("--baseline", metavar="REF", help="fleet-wide: also against a server of REF's code")
    add("--quick", action="store_true", help="200 workers, short phases: a smoke run")
    args = parser.parse_args(argv)
    args.phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    if bad := args.phases - set(PHASES):
        parser.error(f"unknown phases {sorted(bad)}")
    args.heartbeat, args.runs = 30.0, (60.0, 2.0, 30.0, 8.0)  # baseline and long-poll changes
    bursts, args.jobs, args.poll_jobs, args.real_jobs = 5, 60, 20, 20
    if args.quick:
        args.workers, args.heartbeat, args.runs = 200, 10.0, (5.0, 2.0, 5.0, 8.0)
        bursts, args.jobs, args.poll_jobs, args.real_jobs = 1, 10, 3, 5
    args.bursts = args.bursts or bursts
    return args


def operator_request(port: int, headers: dict, body: object) -> tuple[int, bytes, float, float]:
    """One fleet-wide PATCH sent from a process of its own, as the CLI sends it: status, body,
    and the wall-clock times it was sent and answered. Sent from the bench's own event loop,
    its time would include that loop's turn at the thousand long-poll answers arriving at
    the same moment."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        sent = time.time()
        connection.request("PATCH", f"{API_PREFIX}/workers", json.dumps(body).encode(), headers)
        response = connection.getresponse()
        return response.status, response.read(), sent, time.time()
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
    burst: list[float | None] = field(default_factory=list)  # fleet-wide: each worker's ack
    requests: list[float] = field(default_factory=list)  # fleet-wide: sent -> returned
    cpu: list[float] = field(default_factory=list)  # fleet-wide: server CPU s per change


class Run:
    """One server, its fleet, and the operator's side."""

    def __init__(self, args: argparse.Namespace, bench: Bench) -> None:
        self.args, self.bench = args, bench
        self.fleet = Fleet(bench.secret, bench.ports, args.heartbeat)
        self.names = [f"sim-{i:05d}" for i in range(args.workers)]
        self.admin = Pools(bench.ports)
        #: Sends fleet-wide changes (``operator_request``); started with the first one.
        self.operator = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self.headers = admin_headers(bench.secret)
        self.rng = random.Random(1)
        self.phases: list[Phase] = []
        self.engine = create_engine(bench.db_url)  # reads the acknowledgements

    async def close(self) -> None:
        await self.fleet.close()
        self.admin.close()
        self.operator.shutdown()
        self.engine.dispose()

    async def call(self, method: str, path: str, body: object) -> tuple[dict | None, float, float]:
        sent = time.monotonic()
        status, answer = await self.admin.send(
            0, (method, f"{API_PREFIX}{path}", self.headers, body)
        )
        returned = time.monotonic()
        if status not in (200, 201):
            self.fleet.tally.errors[f"{method} {path.split('/')[1]}: {status}"] += 1
            return None, sent, returned
        return json.loads(answer), sent, returned

    def acked(self, change: Change) -> float | None:
        for applied, at in self.fleet.agents[change.hostname].acks:
            if applied >= change.version and at >= change.sent:
                return at - change.returned
        return None

    async def put(self, hostname: str) -> Change | None:
        current = self.fleet.agents[hostname].worker.concurrency
        value = self.rng.choice([c for c in range(1, 17) if c != current])
        body = {"concurrency": value}
        reply, sent, returned = await self.call("PUT", f"/workers/{hostname}/concurrency", body)
        return reply and Change(hostname, reply["versions"][hostname], sent, returned)

    async def changes(self, name: str, duration: float, rate: float, bursts: int) -> None:
        """Open loop: one PUT every 1/rate s to a random worker without a change pending;
        each change's time to its ack (bounded), then ``bursts`` fleet-wide changes."""
        progress(name)
        phase, start, tasks, pending = Phase(name), time.monotonic(), [], {}
        for i in range(max(1, int(duration * rate))):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            for host, task in list(pending.items()):
                if task.done() and (task.result() is None or self.acked(task.result())):
                    del pending[host]
            name = self.rng.choice(self.names)
            if name not in pending:
                tasks.append(pending.setdefault(name, asyncio.create_task(self.put(name))))
        changes = [c for c in await asyncio.gather(*tasks) if c is not None]
        drain = 1.1 * self.args.heartbeat + 5
        await within(lambda: all(self.acked(c) is not None for c in changes), drain)
        phase.latencies = [self.acked(c) for c in changes]
        for _ in range(bursts):
            await self.fleet_wide(phase, drain)
        self.phases.append(phase)

    async def fleet_wide(self, phase: Phase, timeout: float) -> None:
        """``set-worker-concurrency --all``: the request's time, the server's CPU until every
        acknowledgement is listed, and each worker's ``applied_at`` after the return."""
        tally = self.fleet.tally
        if tally.waiting:  # long-poll: the fleet back to waiting first
            await within(lambda: tally.waiting >= len(self.names), 30)
        change = {"action": "set-concurrency", "concurrency": self.rng.randint(2, 16)}
        body = {"target": {"all": True}, "change": change}
        cpu = session_cpu(self.bench.servers[0].pid)
        headers = self.headers | {"Content-Type": "application/json"}
        status, answer, sent, returned = await asyncio.get_running_loop().run_in_executor(
            self.operator, operator_request, self.bench.ports[0], headers, body
        )
        phase.requests.append(returned - sent)
        reply = json.loads(answer) if status == 200 else {}
        if status != 200:
            tally.errors[f"PATCH workers: {status}"] += 1
        versions = {h: v for h, v in reply.get("versions", {}).items() if h in self.fleet.agents}
        acked = await self.listed_acks(versions, returned, timeout)
        phase.burst += [acked.get(h) for h in versions]
        phase.cpu.append(session_cpu(self.bench.servers[0].pid) - cpu)

    async def listed_acks(self, versions: dict[str, int], returned: float, timeout: float):
        """Seconds from ``returned`` (wall clock) to each worker's acknowledgement of its
        version as the database holds it (``applied_at``, what ``list-workers`` shows). Read
        from the database once every worker has sent its acknowledgement: asking the server
        meanwhile would load the server that is being measured."""
        deadline = time.monotonic() + timeout
        agents = self.fleet.agents
        await within(lambda: all(agents[h].sent >= v for h, v in versions.items()), timeout)
        acked: dict[str, float] = {}
        while len(acked) < len(versions) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            for hostname, version, at in await asyncio.to_thread(self.applied):
                if hostname in versions and version >= versions[hostname] and at is not None:
                    acked[hostname] = at.timestamp() - returned
        return acked

    def applied(self) -> list[tuple[str, int, datetime | None]]:
        """Every worker's acknowledged version and when, read from the database."""
        query = select(Worker.hostname, Worker.applied_version, Worker.applied_at)
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(query)]

    async def fleet_bursts(self, baseline: Run | None) -> None:
        """Fleet-wide changes acknowledged by an immediate heartbeat and on the next
        long-poll, alternating, same server and fleet; and in turn on the ``baseline``
        server (another code's), acknowledged on the next long-poll."""
        paths = [(self, Phase("ack by heartbeat (before)"), False)]
        paths.append((self, Phase("ack on the next long-poll"), True))
        if self.args.ack != "both":  # one path: against a server without the other, say
            paths = [paths[self.args.ack == "long-poll"]]
        if baseline is not None:
            name = f"ack on the next long-poll, code {self.args.baseline}"
            paths.insert(0, (baseline, Phase(name), True))
        progress(" / ".join(phase.name for _, phase, _ in paths) + f": {self.args.bursts} each")
        for _ in range(self.args.bursts):
            for run, phase, on_watch in paths:
                run.fleet.ack_on_watch = on_watch
                await run.fleet_wide(phase, 30)
        self.fleet.ack_on_watch = False
        self.phases += [phase for _, phase, _ in paths]

    async def start_fleet(self) -> None:
        """The fleet registered and heartbeating."""
        self.fleet.start(agent.heartbeats() for agent in await self.fleet.add(self.names, "fleet"))

    async def watch_all(self) -> None:
        """The fleet holding long-polls: all a fleet-wide change needs."""
        agents = [self.fleet.agents[n] for n in self.names]
        self.fleet.start(a.dispatch(WATCH, self.rng.uniform(1.0, WATCH)) for a in agents)
        await within(lambda: self.fleet.tally.waiting >= len(agents), 60)

    async def sim_jobs(self, name: str, queue: str, count: int, timeout: float) -> None:
        progress(name)
        phase, arrivals = Phase(name), self.fleet.tally.arrivals
        for _ in range(count):
            reply, _, returned = await self.call(
                "POST", "/jobs", {"command": ["true"], "queue": queue}
            )
            got = reply and await within(lambda job=reply["id"]: arrivals.get(job), timeout)
            phase.latencies.append(got - returned if got else None)
            await asyncio.sleep(0.2 * self.rng.uniform(0.5, 1.5))
        self.phases.append(phase)

    async def real_jobs(self, long_poll: bool) -> None:
        name = "real-lp" if long_poll else "real-poll"
        stamps = self.bench.home / f"{name}.starts"
        flags = ["-c", "2", "-q", name, "--heartbeat-interval", "30", "--poll-interval", str(POLL)]
        flags += [] if long_poll else ["--no-long-poll"]
        await asyncio.to_thread(self.bench.start_worker, name, *flags)
        command = ["sh", "-c", f'echo "$EDGEFLEET_JOB_ID $(date +%s.%N)" >> {stamps}']
        label = "real worker, " + ("long-poll" if long_poll else "--no-long-poll")
        progress(label)
        phase = Phase(f"{label} (poll {POLL:g} s)")
        for _ in range(self.args.real_jobs):
            wall = time.time()
            reply, sent, returned = await self.call(
                "POST", "/jobs", {"command": command, "queue": name}
            )
            start = reply and await within(
                lambda job=reply["id"]: read_stamps(stamps).get(job), 2 * POLL + 10
            )
            phase.latencies.append(start - (wall + returned - sent) if start else None)
            await asyncio.sleep(0.2 * self.rng.uniform(0.5, 1.5))
        self.phases.append(phase)

    async def main(self) -> None:
        args, fleet = self.args, self.fleet
        await self.start_fleet()
        if "baseline" in args.phases:
            await self.changes("heartbeat only", *args.runs[:2], bursts=1)
        await self.watch_all()
        if "longpoll" in args.phases:
            await self.changes("long-poll", *args.runs[2:], bursts=0)
        if "fleetwide" in args.phases:
            await self.against_baseline()
        if "jobs" in args.phases:
            idle = await fleet.add([f"idle-lp-{i}" for i in range(IDLE)], "jobs-lp")
            fleet.start(agent.dispatch(WATCH) for agent in idle)
            await asyncio.sleep(1.0)
            await self.sim_jobs(f"{IDLE} idle workers, long-poll", "jobs-lp", args.jobs, 10)
            poll = await fleet.add([f"idle-poll-{i}" for i in range(IDLE)], "jobs-poll")
            polling = fleet.start(agent.dispatch(poll=POLL) for agent in poll)
            label = f"{IDLE} idle workers, poll every {POLL:g} s"
            await self.sim_jobs(label, "jobs-poll", args.poll_jobs, 2 * POLL + 5)
            await fleet.stop(polling)
        if "real" in args.phases:
            await self.real_jobs(long_poll=True)
            await self.real_jobs(long_poll=False)

    async def against_baseline(self) -> None:
        """``fleet_bursts``, with a server of ``--baseline``'s code and its own fleet."""
        if not self.args.baseline:
            await self.fleet_bursts(None)
            return
        with Bench() as bench:
            progress(f"baseline: a server of {self.args.baseline} and its fleet")
            src = await asyncio.to_thread(export_src, self.args.baseline, bench.home)
            await asyncio.to_thread(bench.start_server, PYTHONPATH=str(src))
            baseline = Run(self.args, bench)
            try:
                await baseline.start_fleet()
                await baseline.watch_all()
                await self.fleet_bursts(baseline)
            finally:
                await baseline.close()
            if errors := bench.errors():
                print(f"baseline server logged {len(errors)} error lines: {errors[0][:200]}")


def export_src(ref: str, home: Path) -> Path:
    """``src/`` of commit ``ref``, unpacked under ``home``: put first on a server's
    PYTHONPATH, it runs that code (this checkout's is installed editable, behind it)."""
    root, archive = Path(__file__).resolve().parent.parent, home / "baseline.tar"
    git = ["git", "-C", str(root), "archive", "-o", str(archive), ref, "src"]
    subprocess.run(git, check=True, timeout=60)
    with tarfile.open(archive) as tar:
        tar.extractall(home / "baseline", filter="data")
    return home / "baseline" / "src"


def read_stamps(path: Path) -> dict[int, float]:
    with contextlib.suppress(FileNotFoundError):
        pairs = (line.split() for line in path.read_text().splitlines())
        return {int(job): float(at) for job, at in pairs}
    return {}


def report(run: Run) -> None:
    args = run.args
    print(
        f"\nfleet control plane: {args.workers} simulated workers, heartbeat "
        f"{args.heartbeat:g} s; code: {git_state()}"
    )
    changes = [p for p in run.phases if p.name in ("heartbeat only", "long-poll")]
    rows = [summary_row(f"change, {p.name}", p.latencies) for p in changes]
    rows += [summary_row(f"fleet-wide, {p.name}", p.burst) for p in run.phases if p.burst]
    rows += [summary_row(f"job, {p.name}", p.latencies) for p in run.phases if "worker" in p.name]
    rows += [summary_row(f"request, {p.name}", p.requests) for p in run.phases if p.requests]
    rows += [summary_row(f"server CPU s per change, {p.name}", p.cpu) for p in run.phases if p.cpu]
    print_table(
        "from the request's return: change -> its ack; fleet-wide -> each worker's ack "
        "(applied_at in the database); request: sent -> returned;\n"
        "job -> started (sim: its fetch returned it, real: the job's own stamp)",
        SUMMARY_HEADERS,
        rows,
    )
    if errors := run.fleet.tally.errors:
        print("client-side errors: " + ", ".join(f"{k} x{v}" for k, v in errors.items()))
    if errors := run.bench.errors():
        print(f"server logged {len(errors)} error lines, first: {errors[0][:200]}")


async def amain(args: argparse.Namespace) -> None:
    random.seed(1)
    with Bench() as bench:
        bench.start_server()
        run = Run(args, bench)
        try:
            await run.main()
        finally:
            await run.close()
        report(run)


if __name__ == "__main__":
    install_signal_exit()
    sys.exit(run_async(amain(parse_args())))
