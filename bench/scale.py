"""Measured scale: heartbeats/s, fleet size and no-op job throughput per backend and replica count.

SQLite or PostgreSQL, one or two replicas (two only on PostgreSQL), simulated workers; rates
also as a fraction of a bare FastAPI endpoint measured right before. Phases:

- ``heartbeat``: open-loop steps around a closed-loop probe's rate: the best at p99 < 100 ms.
- ``fleet``: the largest N workers heartbeating every 10 s with >= 95 % answered, p99 <= 1 s,
  <= 0.1 % failed and no ``last_heartbeat`` older than 1.5 intervals.
- ``jobs``: no-op jobs taken by 50 simulated workers: submitted while they run, and a backlog.
- ``caps``: the jobs phase under a cap that never binds and one that binds, as ratios to the
  same round's uncapped figures (``--rounds``; each round starts one mode later: use 3, 6, ...).
- ``credentials`` (not by default): heartbeats of workers with their own credentials against
  workers signing with the shared secret, alternating (ABBA) rounds.

    .venv/bin/python bench/scale.py [--quick] [--backends sqlite --replicas 1 --phases caps]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import uvloop
from _common import (
    Bench,
    fmt_ms,
    fmt_rate,
    git_state,
    postgres_server,
    print_table,
    progress,
    session_cpu,
    summarize,
)
from _sim import (
    Fleet,
    Outcome,
    Pools,
    Request,
    SimWorker,
    Tally,
    admin_headers,
    closed_loop,
    for_all,
    open_loop,
    sim_workers,
    within,
)

from edgefleet.contract import API_PREFIX
from edgefleet.db.models import Worker
from edgefleet.worker.client import KEEPALIVE_SECONDS
from support import ManagedProcess, free_port, fresh_database
from support.processes import spawn

PHASES = ("heartbeat", "fleet", "jobs", "caps", "credentials")
HB_P99 = 0.100  # the heartbeat phase's p99 bound (s)
FLEET_INTERVAL, FLEET_P99 = 10.0, 1.0
JOB_WORKERS, JOB_SLOTS, SUBMITTERS, BATCH = 50, 8, 32, 50


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--backends", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    add("--replicas", default="1,2", help="replica counts (2 only on postgres)")
    add("--phases", default=",".join(PHASES[:-1]), help=f"comma-separated: {','.join(PHASES)}")
    add("--rounds", type=int, default=3, help="caps and credentials: rounds")
    add("--quick", action="store_true", help="short steps and small fleets: a smoke run")
    args = parser.parse_args(argv)
    choices = {"backends": ("sqlite", "postgres"), "replicas": ("1", "2"), "phases": PHASES}
    for name, allowed in choices.items():
        items = [p.strip() for p in getattr(args, name).split(",") if p.strip()]
        if bad := set(items) - set(allowed):
            parser.error(f"--{name}: unknown {sorted(bad)}")
        setattr(args, name, items)
    quick, args.replicas = args.quick, [int(r) for r in args.replicas]
    args.hb_workers, args.hb_seconds = (200, 2.0) if quick else (1000, 5.0)
    args.fleet_sizes = [300, 1000] if quick else [1000, 2500, 5000, 10000]
    args.fleet_window, args.jobs = (13.0, 500) if quick else (30.0, 3000)
    args.ceiling_seconds = 2.0 if quick else 5.0
    return args


def label(bench: Bench) -> str:
    return f"{bench.db_url.split(':', 1)[0].split('+')[0]} x{len(bench.servers)}"


def frac(value: float | None, ceiling: float | None) -> str:
    ok = value is not None and ceiling and math.isfinite(value) and math.isfinite(ceiling)
    return f"{value / ceiling:.3f} of {ceiling:.0f}" if ok else "-"


BARE_APP = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/ping")
async def ping():
    return {"ok": True}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
PING: Request = ("GET", "/ping", {}, None)


class Ceiling:
    """This host's HTTP ceiling, measured right before each phase (the host's load drifts)."""

    def __init__(self, bench: Bench, seconds: float) -> None:
        self.seconds, port = seconds, free_port()
        log, argv = bench.home / "ceiling.log", [sys.executable, "-c", BARE_APP, str(port)]
        self.proc = bench.registry.add(ManagedProcess("ceiling", argv, spawn(argv, {}, log), log))
        self.pools = Pools([port])

    async def measure(self, name: str) -> float:
        async def up() -> bool:
            return (await self.pools.send(0, PING))[0] == 200

        if not await within(up, 30):
            raise RuntimeError(f"the bare FastAPI app does not answer:\n{self.proc.log_tail()}")
        out = await closed_loop(self.pools, lambda i: PING, 32, self.seconds)
        progress(f"ceiling ({name}): {out.rate:.0f} req/s")
        return out.rate


STEP_FRACTIONS = (0.25, 0.5, 0.7, 0.85, 1.0, 1.15)


async def best_heartbeats(bench: Bench, args: argparse.Namespace, fleet: Fleet) -> Outcome | None:
    """The best open-loop step around the probe's saturation rate (two misses in a row end it)."""
    workers = [agent.worker for agent in fleet.agents.values()]

    def make(i: int) -> Request:
        return workers[i % len(workers)].heartbeat()

    probe = await closed_loop(fleet.pools, make, 32, args.hb_seconds)
    progress(f"{label(bench)} heartbeat probe: {probe.rate:.0f}/s p99 {fmt_ms(probe.lat.p99)}")
    best, missed, fractions = None, False, list(STEP_FRACTIONS)
    while fractions:
        await asyncio.sleep(0.5)
        step = await open_loop(fleet.pools, make, probe.rate * fractions[0], args.hb_seconds)
        enough = step.answered >= 0.95 * step.offered * step.seconds
        passed = enough and step.lat.p99 < HB_P99 and step.failed == 0
        verdict = f"p99 {fmt_ms(step.lat.p99)} failed {step.failed} {'ok' if passed else 'over'}"
        progress(f"  offered {step.offered:.0f}/s: {step.rate:.0f}/s {verdict}")
        if passed:
            best = step
            fractions.pop(0)
        elif missed:
            break
        missed = not passed
    return best


async def heartbeat_cell(bench: Bench, args: argparse.Namespace, top: float | None) -> str:
    fleet = Fleet(bench.ports, FLEET_INTERVAL)
    try:
        await fleet.add(sim_workers(bench.secret, "hb", args.hb_workers), "hb")
        best = await best_heartbeats(bench, args, fleet)
    finally:
        await fleet.close()
    rate = best.rate if best else None
    return f"{fmt_rate(rate)} p99 {fmt_ms(best and best.lat.p99)} ({frac(rate, top)})"


async def enrolled(pools: Pools, secret: str, count: int) -> list[SimWorker]:
    """``count`` workers enrolled with one join token, each sending its own credential."""
    body = {"uses": count, "ttl_seconds": 3600}
    join = await pools.call(("POST", f"{API_PREFIX}/tokens/join", admin_headers(secret), body))
    headers = {"Authorization": f"Bearer {join['token']}"}
    names = [f"cred{i:05d}" for i in range(count)]
    path = f"{API_PREFIX}/edge/enroll"
    answers = await for_all(pools, [("POST", path, headers, {"hostname": n}) for n in names])
    credentials = [json.loads(answer)["credential"] for answer in answers]
    return [SimWorker(n, lambda c=c: c) for n, c in zip(names, credentials, strict=True)]


async def credentials_cell(bench: Bench, args: argparse.Namespace, top: float | None) -> str:
    """Own credentials against shared-secret tokens: medians of the ABBA rounds."""
    fleets = {kind: Fleet(bench.ports, FLEET_INTERVAL) for kind in ("secret", "credential")}
    rates: dict[str, list[float]] = {kind: [] for kind in fleets}
    try:
        await fleets["secret"].add(sim_workers(bench.secret, "hb", args.hb_workers), "hb")
        own = await enrolled(fleets["credential"].pools, bench.secret, args.hb_workers)
        await fleets["credential"].add(own, "hb")
        for n in range(args.rounds):
            for kind, fleet in list(fleets.items())[:: -1 if n % 2 else 1]:
                best = await best_heartbeats(bench, args, fleet)
                rates[kind].append(best.rate if best else 0.0)
                progress(f"{label(bench)} credentials {n + 1} {kind}: {rates[kind][-1]:.0f}/s")
    finally:
        for fleet in fleets.values():
            await fleet.close()
    secret, own = (statistics.median(rates[k]) for k in ("secret", "credential"))
    spans = {k: f"{min(v):.0f}-{max(v):.0f}" for k, v in rates.items()}
    return (
        f"own credentials {own:.0f}/s [{spans['credential']}], shared secret {secret:.0f}/s "
        f"[{spans['secret']}] ({own / secret if secret else math.nan:.2f}x)"
    )


def fleet_step(size: int, tally: Tally, stale: int, window: float) -> tuple[bool, str]:
    """Whether ``size`` workers kept up (as the module's docstring says), and as text."""
    rate, p99 = len(tally.beats) / window, summarize(tally.beats).p99
    ok = rate >= 0.95 * size / FLEET_INTERVAL and p99 <= FLEET_P99 and stale == 0
    ok = ok and sum(tally.errors.values()) <= 0.001 * max(1, tally.scheduled)
    beats = f"{rate:.0f}/{size / FLEET_INTERVAL:.0f} beats/s, p99 {fmt_ms(p99)}"
    return ok, f"{size} {'ok' if ok else 'BEHIND'} ({beats})"


def stale_workers(bench: Bench, prefix: str, older_than: float) -> int:
    """Workers whose last heartbeat is older than ``older_than`` s."""
    now, rows = datetime.now(UTC), bench.worker_rows(Worker.hostname, Worker.last_heartbeat)
    old = [not b or (now - b).total_seconds() > older_than for h, b in rows if h.startswith(prefix)]
    return sum(old)


async def fleet_cell(bench: Bench, args: argparse.Namespace, top: float | None) -> str:
    """Step the fleet size up until one falls behind: the largest that kept up, and that."""
    fleet = Fleet(bench.ports, FLEET_INTERVAL, keepalive=KEEPALIVE_SECONDS)
    steps: list[tuple[bool, str]] = []
    try:
        for size in args.fleet_sizes:
            await fleet.add(sim_workers(bench.secret, "fl", size, len(fleet.agents)), "fleet")
            fleet.tally = Tally()
            until = time.monotonic() + args.fleet_window
            await asyncio.gather(*(agent.heartbeats(until) for agent in fleet.agents.values()))
            stale = await asyncio.to_thread(stale_workers, bench, "fl", 1.5 * FLEET_INTERVAL)
            steps.append(fleet_step(size, fleet.tally, stale, args.fleet_window))
            progress(f"{label(bench)} fleet {steps[-1][1]}, stale {stale}")
            if not steps[-1][0]:
                break
    finally:
        await fleet.close()
    kept = [text for ok, text in steps if ok][-1:]
    return "; ".join(kept + [text for ok, text in steps if not ok])


#: The caps compared: none; one far above the fleet's slots (never binds, so any difference
#: is what enforcing it costs); one at a worker's share (binds now and then).
CAP_MODES = (("none", None), ("loose", JOB_WORKERS * JOB_SLOTS * 10), ("tight", JOB_WORKERS))


async def work_off(fleet: Fleet, jobs: int, submit: str | None) -> float:
    """Jobs/s of ``jobs`` no-op jobs submitted while the agents run (``submit``: the secret), or
    of a backlog."""
    fleet.tally = Tally()
    tasks = fleet.start(agent.dispatch(2.0) for agent in fleet.agents.values())
    start = time.time()
    if submit:
        await submit_jobs(fleet.pools, submit, jobs)
    if not await within(lambda: len(fleet.tally.done) >= jobs, max(60.0, jobs / 20)):
        progress(f"  jobs: only {len(fleet.tally.done)}/{jobs} completed in time")
    await fleet.stop(tasks)
    return jobs / (fleet.tally.last_done - start)


async def submit_jobs(pools: Pools, secret: str, jobs: int) -> None:
    job = {"command": ["true"], "queue": "noop"}
    sizes = [min(BATCH, jobs - start) for start in range(0, jobs, BATCH)]
    path, headers = f"{API_PREFIX}/jobs/batch", admin_headers(secret)
    await for_all(pools, [("POST", path, headers, {"jobs": [job] * n}) for n in sizes], SUBMITTERS)


async def job_rounds(bench: Bench, args, prefix: str, modes: tuple, rounds: int) -> list[dict]:
    """Per round, per cap mode (interleaved, so the host's drift weighs on each alike): jobs/s
    submitted while the workers run, jobs/s of a backlog drained, servers' CPU s per job."""
    fleet = Fleet(bench.ports, FLEET_INTERVAL, slots=JOB_SLOTS)
    results: list[dict[str, tuple[float, float, float]]] = []
    try:  # names of their own per phase: the last phase's workers are still registered
        await fleet.add(sim_workers(bench.secret, prefix, JOB_WORKERS), "noop")
        for n in range(rounds):
            results.append({})
            first = n % len(modes)  # in any len(modes) rounds each mode runs once in each place
            for mode, cap in modes[first:] + modes[:first]:
                body = {"reset": True} if cap is None else {"concurrency": cap}
                put = ("PUT", f"{API_PREFIX}/queues/noop", admin_headers(bench.secret), body)
                await fleet.pools.call(put)
                cpu = session_cpu(*bench.pids)
                e2e = await work_off(fleet, args.jobs, bench.secret)
                await submit_jobs(fleet.pools, bench.secret, args.jobs)
                drain = await work_off(fleet, args.jobs, None)
                cpu = (session_cpu(*bench.pids) - cpu) / (2 * args.jobs)
                results[-1][mode] = (e2e, drain, cpu)
                text = f"{e2e:.0f}/s, drain {drain:.0f}/s, CPU {fmt_ms(cpu)}/job"
                progress(f"{label(bench)} jobs, round {n + 1}, cap {mode}: {text}")
    finally:
        await fleet.close()
    return results


async def jobs_cell(bench: Bench, args: argparse.Namespace, top: float | None) -> str:
    (only,) = await job_rounds(bench, args, "jw", CAP_MODES[:1], 1)
    e2e, drain, cpu = only["none"]
    return f"e2e {fmt_rate(e2e)}, drain {fmt_rate(drain)}, CPU {fmt_ms(cpu)}/job ({frac(e2e, top)})"


async def caps_cell(bench: Bench, args: argparse.Namespace, top: float | None) -> str:
    """Per capped mode, the median and range of the rounds' ratios to their uncapped figures."""
    results, parts = await job_rounds(bench, args, "cw", CAP_MODES, args.rounds), []
    for mode, _ in CAP_MODES[1:]:
        ratios = [[c / b for c, b in zip(r[mode], r["none"], strict=True)] for r in results]
        columns = zip(("e2e", "drain", "cpu/job"), zip(*ratios, strict=True), strict=True)
        cells = [f"{n} {statistics.median(v):.2f}x [{min(v):.2f}-{max(v):.2f}]" for n, v in columns]
        parts.append(f"{mode} {' '.join(cells)}")
    return "; ".join(parts)


CELLS = {
    f.__name__.removesuffix("_cell"): f
    for f in (heartbeat_cell, fleet_cell, jobs_cell, caps_cell, credentials_cell)
}


async def run_config(bench: Bench, args: argparse.Namespace, ceiling: Ceiling) -> list:
    """The configuration's summary row; a rate's cell also as a fraction of the ceiling."""
    progress(f"== {label(bench)}: servers on ports {bench.ports}")
    cells: list[str] = []
    for phase in args.phases:
        rate = phase in ("heartbeat", "jobs")
        top = await ceiling.measure(f"{label(bench)} {phase}") if rate else None
        cells.append(await CELLS[phase](bench, args, top))
    for line in bench.errors()[:5]:
        progress(f"  server error: {line}")
    return [label(bench), *cells, len(bench.errors())]


async def amain(args: argparse.Namespace) -> None:
    random.seed(1)
    configs = [(b, r) for b in args.backends for r in args.replicas if r == 1 or b == "postgres"]
    rows = []
    with contextlib.ExitStack() as stack:
        if any(b == "postgres" for b, _ in configs):
            pg_url = stack.enter_context(postgres_server())
        ceiling = Ceiling(stack.enter_context(Bench()), args.ceiling_seconds)
        for backend, replicas in configs:
            with contextlib.ExitStack() as config:  # servers stop before their database goes
                db_url = None
                if backend == "postgres":
                    db_url = config.enter_context(fresh_database(Path("."), server_url=pg_url))
                bench = config.enter_context(Bench())
                for _ in range(replicas):
                    bench.start_server(db_url)
                rows.append(await run_config(bench, args, ceiling))
        ceiling.pools.close()
    print(f"\nmeasured scale; code: {git_state()}; quick={args.quick}")
    print_table(
        f"SUMMARY ((fraction of the bare endpoint's req/s measured right before the phase); "
        f"fleet at a {FLEET_INTERVAL:g} s heartbeat: the largest N that kept up, then any behind)",
        ["config", *args.phases, "srv errors"],
        rows,
    )


if __name__ == "__main__":
    uvloop.run(amain(parse_args()))
