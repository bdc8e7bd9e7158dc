"""Fleet control plane at scale: change -> acknowledgement, and job submitted -> job started.

One server (SQLite) and ``-n`` simulated workers heartbeating every 30 s; a change counts from
its request's return to the worker's ``applied_at`` (what ``list-workers`` shows). Phases:
``baseline`` (PUT concurrency, 2/s, the fleet only heartbeating), ``longpoll`` (8/s, acked on
the next long-poll), ``fleetwide`` (``PATCH /workers`` target ``all``; ``--baseline REF``: in
turn against a server of REF's code), ``jobs`` (job -> fetched by an idle simulated worker,
long-polling against polling every 5 s), ``real`` (job -> its own start stamp on a real worker,
with and without long-polls).

    .venv/bin/python bench/control_plane.py [--quick] [--phases fleetwide --baseline REF]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import multiprocessing
import random
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import uvloop
from _common import ROOT, Bench, fmt_ms, git_state, print_table, progress, session_cpu, summarize
from _sim import Fleet, admin_headers, cancel, sim_workers, within

from edgefleet.contract import API_PREFIX
from edgefleet.db.models import Worker

PHASES = ("baseline", "longpoll", "fleetwide", "jobs", "real")
WATCH, POLL, IDLE = 30.0, 5.0, 3  # long-poll timeout, the poll baseline, idle workers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--workers", "-n", type=int, default=1000, help="simulated workers in the fleet")
    add("--phases", default=",".join(PHASES), help=f"comma-separated: {','.join(PHASES)}")
    add("--bursts", type=int, help="fleet-wide changes (default 5; --quick: 1)")
    add("--baseline", metavar="REF", help="fleet-wide: also against a server of REF's code")
    add("--quick", action="store_true", help="200 workers, short phases: a smoke run")
    args = parser.parse_args(argv)
    args.phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    if bad := args.phases - set(PHASES):
        parser.error(f"unknown phases {sorted(bad)}")
    # changes: baseline, long-poll phase; jobs: idle long-polling, idle polling, each real worker
    args.heartbeat, args.changes, args.jobs = 30.0, (120, 240), (60, 20, 20)
    if args.quick:
        args.workers, args.heartbeat, args.changes, args.jobs = 200, 10.0, (10, 40), (10, 3, 5)
    args.bursts = args.bursts or (1 if args.quick else 5)
    return args


def operator_request(port: int, pid: int, headers: dict, body: object) -> tuple:
    """One fleet-wide PATCH: status, body, wall clock sent and answered, the server's CPU s in
    between. In a process of its own: in the bench's event loop its time would include the
    loop's turn at the thousand long-poll answers arriving at the same moment."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        cpu, sent = thread_cpu(pid), time.time()
        connection.request("PATCH", f"{API_PREFIX}/workers", json.dumps(body).encode(), headers)
        response = connection.getresponse()
        answer, returned = response.read(), time.time()
        return response.status, answer, sent, returned, thread_cpu(pid) - cpu
    finally:
        connection.close()


def thread_cpu(pid: int) -> float:
    """CPU s of a process's threads to the ns (``stat``'s ticks would round a request's)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


class Run:
    """One server, its fleet, and the operator's side."""

    def __init__(self, args: argparse.Namespace, bench: Bench) -> None:
        self.args, self.bench = args, bench
        self.fleet = Fleet(bench.ports, args.heartbeat)
        self.headers = admin_headers(bench.secret)
        self.rng = random.Random(1)
        self.samples: dict[str, list] = defaultdict(list)  # a report row each
        self.operator = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))

    async def close(self) -> None:
        await self.fleet.close()
        self.operator.shutdown()

    async def call(self, method: str, path: str, body: object) -> tuple[dict | None, float]:
        """The answer (``None``: refused) and the wall-clock time it returned."""
        request = (method, f"{API_PREFIX}{path}", self.headers, body)
        status, answer = await self.fleet.pools.send(0, request)
        if status not in (200, 201):
            self.fleet.tally.errors[f"{method} {path.split('/')[1]}: {status}"] += 1
            return None, time.time()
        return json.loads(answer), time.time()

    async def changes(self, name: str, count: int, rate: float) -> None:
        """Open loop: a PUT concurrency every 1/rate s, each to a worker of its own."""
        progress(name)
        start, tasks, agents = time.monotonic(), [], self.fleet.agents
        for i, host in enumerate(self.rng.sample(list(agents), min(count, len(agents)))):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            current = agents[host].worker.concurrency
            body = {"concurrency": self.rng.choice([c for c in range(1, 17) if c != current])}
            put = self.call("PUT", f"/workers/{host}/concurrency", body)
            tasks.append(asyncio.create_task(put))
        changed = {}
        for reply, returned in await asyncio.gather(*tasks):
            changed |= {h: (v, returned) for h, v in (reply or {}).get("versions", {}).items()}
        self.samples[name] = await self.acks(changed, 1.1 * self.args.heartbeat + 5)

    async def fleet_wide(self, samples: dict[str, list], name: str) -> None:
        """``set-worker-concurrency --all`` to the fleet waiting on its long-polls."""
        tally, pid = self.fleet.tally, self.bench.servers[0].pid
        await within(lambda: tally.waiting >= len(self.fleet.agents), 30)
        change = {"action": "set-concurrency", "concurrency": self.rng.randint(2, 16)}
        body = {"target": {"all": True}, "change": change}
        cpu, headers = session_cpu(pid), self.headers | {"Content-Type": "application/json"}
        request = (operator_request, self.bench.ports[0], pid, headers, body)
        loop = asyncio.get_running_loop()
        status, answer, sent, returned, request_cpu = await loop.run_in_executor(
            self.operator, *request
        )
        if status != 200:
            tally.errors[f"PATCH workers: {status}"] += 1
        versions = json.loads(answer).get("versions", {}) if status == 200 else {}
        changed = {h: (v, returned) for h, v in versions.items() if h in self.fleet.agents}
        samples[name] += await self.acks(changed, 30)
        samples[f"request, {name}"].append(returned - sent)
        samples[f"server CPU s, request, {name}"].append(request_cpu)
        samples[f"server CPU s, per change, {name}"].append(session_cpu(pid) - cpu)

    async def acks(self, changes: dict[str, tuple[int, float]], timeout: float) -> list:
        """Seconds from each change's return (host -> (version, returned)) to its worker's
        ``applied_at``, read once every worker has sent its acknowledgement."""
        agents, deadline = self.fleet.agents, time.monotonic() + timeout
        await within(lambda: all(agents[h].sent >= v for h, (v, _) in changes.items()), timeout)
        acked: dict[str, float] = {}
        columns = (Worker.hostname, Worker.applied_version, Worker.applied_at)
        while len(acked) < len(changes) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            for host, version, at in await asyncio.to_thread(self.bench.worker_rows, *columns):
                if host in changes and version >= changes[host][0] and at is not None:
                    acked[host] = at.timestamp() - changes[host][1]
        return [acked.get(host) for host in changes]

    async def start_fleet(self, long_poll: bool = True) -> None:
        """The fleet registered and heartbeating, and (``long_poll``) holding long-polls."""
        workers = sim_workers(self.bench.secret, "sim-", self.args.workers)
        self.fleet.start(agent.heartbeats() for agent in await self.fleet.add(workers, "fleet"))
        if long_poll:
            await self.long_poll()

    async def long_poll(self) -> None:
        agents = list(self.fleet.agents.values())
        self.fleet.start(a.dispatch(WATCH, self.rng.uniform(1.0, WATCH)) for a in agents)
        await within(lambda: self.fleet.tally.waiting >= len(agents), 60)

    async def job_starts(
        self, name: str, count: int, queue: str, command: list[str], started: Callable
    ) -> None:
        """Jobs submitted one at a time: each from its return to ``started(id)`` (wall clock)."""
        progress(name)
        for _ in range(count):
            reply, returned = await self.call("POST", "/jobs", {"command": command, "queue": queue})
            at = reply and await within(lambda job=reply["id"]: started(job), 2 * POLL + 10)
            self.samples[name].append(at - returned if at else None)
            await asyncio.sleep(0.2 * self.rng.uniform(0.5, 1.5))

    async def sim_jobs(self, long_poll: bool) -> None:
        """Job -> fetched by one of ``IDLE`` idle simulated workers."""
        queue = f"jobs-{'lp' if long_poll else 'poll'}"
        idle = await self.fleet.add(sim_workers(self.bench.secret, f"idle-{queue}-", IDLE), queue)
        tasks = self.fleet.start(a.dispatch(WATCH, poll=0 if long_poll else POLL) for a in idle)
        await asyncio.sleep(1.0)
        name = f"{IDLE} idle workers, " + ("long-poll" if long_poll else f"poll every {POLL:g} s")
        count = self.args.jobs[0 if long_poll else 1]
        await self.job_starts(name, count, queue, ["true"], self.fleet.tally.arrivals.get)
        await cancel(tasks)  # every job it measured has arrived

    async def real_jobs(self, long_poll: bool) -> None:
        """Job -> its own start stamp on a real worker."""
        name = "real-lp" if long_poll else "real-poll"
        stamps = self.bench.home / f"{name}.starts"
        flags = ["-c", "2", "-q", name, "--heartbeat-interval", "30", "--poll-interval", str(POLL)]
        flags += [] if long_poll else ["--no-long-poll"]
        await asyncio.to_thread(self.bench.start_worker, name, *flags)
        command = ["sh", "-c", f'echo "$EDGEFLEET_JOB_ID $(date +%s.%N)" >> {stamps}']
        how = "long-poll" if long_poll else "--no-long-poll"
        count, started = self.args.jobs[2], lambda job: read_stamps(stamps).get(job)
        await self.job_starts(f"real worker, {how}", count, name, command, started)

    async def main(self) -> None:
        phases = self.args.phases
        await self.start_fleet(long_poll=False)
        if "baseline" in phases:
            await self.changes("change, heartbeat only", self.args.changes[0], 2.0)
        await self.long_poll()
        if "longpoll" in phases:
            await self.changes("change, long-poll", self.args.changes[1], 8.0)
        if "fleetwide" in phases:
            await self.against_baseline()
        for phase, jobs in (("jobs", self.sim_jobs), ("real", self.real_jobs)):
            for long_poll in (True, False) if phase in phases else ():
                await jobs(long_poll)

    async def against_baseline(self) -> None:
        """``--bursts`` fleet-wide changes, in turn with ``--baseline``'s server if given."""
        runs = [(self, "fleet-wide")]
        async with contextlib.AsyncExitStack() as stack:
            if ref := self.args.baseline:
                runs.insert(0, (await baseline_run(self.args, stack), f"fleet-wide, {ref}"))
            progress(f"fleet-wide changes: {self.args.bursts} each, after one not counted")
            for run, _ in runs:  # the first after 1,000 registrations: their writes settle
                await run.fleet_wide(defaultdict(list), "warm-up")
            for _ in range(self.args.bursts):
                for run, name in runs:
                    await run.fleet_wide(self.samples, name)


async def baseline_run(args: argparse.Namespace, stack: contextlib.AsyncExitStack) -> Run:
    """A server of ``--baseline``'s code on a database of its own, its fleet long-polling."""
    bench = stack.enter_context(Bench())
    stack.callback(print_errors, bench, f"baseline server ({args.baseline})")
    progress(f"baseline: a server of {args.baseline} and its fleet")
    src = await asyncio.to_thread(export_src, args.baseline, bench.home)
    await asyncio.to_thread(bench.start_server, PYTHONPATH=str(src))
    run = Run(args, bench)
    stack.push_async_callback(run.close)
    await run.start_fleet()
    return run


def export_src(ref: str, home: Path) -> Path:
    """``src/`` of ``ref``: first on a server's PYTHONPATH, before this editable install."""
    git = ["git", "-C", str(ROOT), "archive", "-o", str(home / "baseline.tar"), ref, "src"]
    subprocess.run(git, check=True, timeout=60)
    shutil.unpack_archive(home / "baseline.tar", home / "baseline", filter="data")
    return home / "baseline" / "src"


def read_stamps(path: Path) -> dict[int, float]:
    with contextlib.suppress(FileNotFoundError):
        pairs = (line.split() for line in path.read_text().splitlines())
        return {int(job): float(at) for job, at in pairs}
    return {}


def print_errors(bench: Bench, name: str) -> None:
    if errors := bench.errors():
        print(f"{name} logged {len(errors)} error lines, first: {errors[0][:200]}")


def summary_row(label: str, values: list) -> list[object]:
    s = summarize(values)
    return [label, s.n, s.missed, *map(fmt_ms, (s.p50, s.p95, s.p99, s.max))]


def report(run: Run) -> None:
    args = run.args
    print(
        f"\nfleet control plane: {args.workers} simulated workers, heartbeat {args.heartbeat:g} s"
    )
    print(f"code: {git_state()}")
    rows = [summary_row(name, values) for name, values in run.samples.items()]
    print_table(
        "from the request's return: change -> each worker's ack (applied_at in the database); "
        "request: sent -> returned;\njob -> started (sim: its fetch returned it, real: the "
        "job's own stamp)",
        ["case", "n", "missed", "p50", "p95", "p99", "max"],
        rows,
    )
    if errors := run.fleet.tally.errors:
        print("client-side errors: " + ", ".join(f"{k} x{v}" for k, v in errors.items()))
    print_errors(run.bench, "server")


async def amain(args: argparse.Namespace) -> None:
    with Bench() as bench:
        bench.start_server()
        run = Run(args, bench)
        try:
            await run.main()
        finally:
            await run.close()
        report(run)


if __name__ == "__main__":
    uvloop.run(amain(parse_args()))
