"""Measured scale: heartbeats/s, fleet size and no-op job throughput per backend and replica count.

SQLite or PostgreSQL, one or two replicas (two only on PostgreSQL), simulated workers
(``_sim``); rates also as a fraction of a bare FastAPI endpoint measured right before.

- ``heartbeat``: open-loop steps around a closed-loop probe's rate: the best at p99 < 100 ms.
- ``fleet``: the largest N workers heartbeating every 10 s with >= 95 % answered, p99 <= 1 s,
  <= 0.1 % failed and no ``last_heartbeat`` older than 1.5 intervals.
- ``jobs``: no-op jobs taken by 50 simulated workers: submitted while they run, and a backlog.
- ``caps``: the jobs phase under a cap that never binds and one that binds, as ratios to the
  same round's uncapped figures (``--rounds``; each round starts one mode later: use 3, 6, ...).
- ``credentials`` (not by default): the heartbeat phase for workers with their own credentials
  against workers signing with the shared secret, alternating (ABBA) rounds.

    .venv/bin/python bench/scale.py                     # sqlite and postgres, 1 and 2
    .venv/bin/python bench/scale.py --quick             # a smoke run
    .venv/bin/python bench/scale.py --backends sqlite --replicas 1 --phases caps
    .venv/bin/python bench/scale.py --backends sqlite --replicas 1 --phases credentials
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from _common import (
    Bench,
    fmt_ms,
    fmt_rate,
    git_state,
    install_signal_exit,
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
    run_async,
    sim_workers,
    within,
)
from sqlalchemy import create_engine, select

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
    args.backends, args.phases = _csv(args.backends), _csv(args.phases)
    args.replicas = [int(r) for r in _csv(args.replicas)]
    if bad := (set(args.backends) - {"sqlite", "postgres"}) | (set(args.phases) - set(PHASES)):
        parser.error(f"unknown backends or phases {sorted(bad)}")
    if any(r not in (1, 2) for r in args.replicas):
        parser.error("--replicas: 1 and/or 2")
    quick = args.quick
    args.hb_workers, args.hb_seconds = (200, 2.0) if quick else (1000, 5.0)
    args.fleet_sizes = [300, 1000] if quick else [1000, 2500, 5000, 10000]
    args.fleet_window = 13.0 if quick else 30.0
    args.jobs = 500 if quick else 3000
    args.ceiling_seconds = 2.0 if quick else 5.0
    return args


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def label(bench: Bench) -> str:
    return f"{bench.db_url.split(':', 1)[0].split('+')[0]} x{len(bench.servers)}"


def frac(value: float | None, ceiling: float | None) -> str:
    ok = value is not None and ceiling and math.isfinite(value) and math.isfinite(ceiling)
    return f"{value / ceiling:.3f} of {ceiling:.0f}" if ok else "-"


# --- the baseline: a bare FastAPI endpoint --------------------------------------------------

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


# --- heartbeats per second ------------------------------------------------------------------

STEP_FRACTIONS = (0.25, 0.5, 0.7, 0.85, 1.0, 1.15)


async def best_heartbeats(bench: Bench, args: argparse.Namespace, fleet: Fleet) -> Outcome | None:
    """The best open-loop step around the probe's saturation rate (two misses in a row end it)."""
    workers = [agent.worker for agent in fleet.agents.values()]

    def make(i: int) -> Request:
        return workers[i % len(workers)].heartbeat()

    probe = await closed_loop(fleet.pools, make, 32, args.hb_seconds, pids=bench.pids)
    progress(
        f"{label(bench)} heartbeat probe: {probe.rate:.0f}/s p99 {fmt_ms(probe.lat.p99)}, "
        f"server CPU {fmt_ms(probe.server_cpu)} per heartbeat"
    )
    best, missed, fractions = None, False, list(STEP_FRACTIONS)
    while fractions:
        await asyncio.sleep(0.5)
        step = await open_loop(fleet.pools, make, probe.rate * fractions[0], args.hb_seconds)
        enough = step.answered >= 0.95 * step.offered * step.seconds
        passed = enough and step.lat.p99 < HB_P99 and step.failed == 0
        progress(
            f"  offered {step.offered:.0f}/s: {step.rate:.0f}/s p99 {fmt_ms(step.lat.p99)} "
            f"failed {step.failed} {'ok' if passed else 'over'}"
        )
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


async def credentials_cell(bench: Bench, args: argparse.Namespace) -> str:
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
                progress(
                    f"{label(bench)} credentials round {n + 1} {kind}: {rates[kind][-1]:.0f}/s"
                )
    finally:
        for fleet in fleets.values():
            await fleet.close()
    secret, own = (statistics.median(rates[k]) for k in ("secret", "credential"))
    spans = {k: f"{min(v):.0f}-{max(v):.0f}" for k, v in rates.items()}
    return (
        f"own credentials {own:.0f}/s [{spans['credential']}], shared secret {secret:.0f}/s "
        f"[{spans['secret']}] ({own / secret if secret else math.nan:.2f}x)"
    )


# --- fleet at a 10 s heartbeat --------------------------------------------------------------


@dataclass
class FleetStep:
    size: int
    tally: Tally
    stale: int
    window: float

    def keeps_up(self) -> bool:
        return (
            len(self.tally.beats) / self.window >= 0.95 * self.size / FLEET_INTERVAL
            and summarize(self.tally.beats).p99 <= FLEET_P99
            and sum(self.tally.errors.values()) <= 0.001 * max(1, self.tally.scheduled)
            and self.stale == 0
        )

    def text(self) -> str:
        rate, p99 = len(self.tally.beats) / self.window, fmt_ms(summarize(self.tally.beats).p99)
        due, verdict = self.size / FLEET_INTERVAL, "ok" if self.keeps_up() else "BEHIND"
        return f"{self.size} {verdict} ({rate:.0f}/{due:.0f} beats/s, p99 {p99})"


def stale_workers(db_url: str, prefix: str, older_than: float) -> int:
    """Workers whose last heartbeat is older than ``older_than`` s."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            query = select(Worker.last_heartbeat).where(Worker.hostname.like(f"{prefix}%"))
            beats = connection.scalars(query).all()
    finally:
        engine.dispose()
    now = datetime.now(UTC)
    return sum(1 for b in beats if not b or (now - b).total_seconds() > older_than)


async def fleet_cell(bench: Bench, args: argparse.Namespace) -> str:
    """Step the fleet size up until one falls behind: the largest that kept up, and that."""
    fleet = Fleet(bench.ports, FLEET_INTERVAL, keepalive=KEEPALIVE_SECONDS)
    steps: list[FleetStep] = []
    try:
        for size in args.fleet_sizes:
            await fleet.add(sim_workers(bench.secret, "fl", size, len(fleet.agents)), "fleet")
            fleet.tally = Tally()
            until = time.monotonic() + args.fleet_window
            await asyncio.gather(*(agent.heartbeats(until) for agent in fleet.agents.values()))
            stale = await asyncio.to_thread(stale_workers, bench.db_url, "fl", 1.5 * FLEET_INTERVAL)
            steps.append(FleetStep(size, fleet.tally, stale, args.fleet_window))
            progress(f"{label(bench)} fleet {steps[-1].text()}, stale {stale}")
            if not steps[-1].keeps_up():
                break
    finally:
        await fleet.close()
    kept = [s for s in steps if s.keeps_up()][-1:]
    return "; ".join(s.text() for s in kept + [s for s in steps if not s.keeps_up()])


# --- no-op job throughput, and under a queue cap --------------------------------------------

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
    ((e2e, drain, cpu),) = (
        r["none"] for r in await job_rounds(bench, args, "jw", CAP_MODES[:1], 1)
    )
    return f"e2e {fmt_rate(e2e)}, drain {fmt_rate(drain)}, CPU {fmt_ms(cpu)}/job ({frac(e2e, top)})"


async def caps_cell(bench: Bench, args: argparse.Namespace) -> str:
    """Per capped mode, the median and range of the rounds' ratios to their uncapped figures."""
    results, parts = await job_rounds(bench, args, "cw", CAP_MODES, args.rounds), []
    for mode, _ in CAP_MODES[1:]:
        ratios = [[c / b for c, b in zip(r[mode], r["none"], strict=True)] for r in results]
        columns = zip(("e2e", "drain", "cpu/job"), zip(*ratios, strict=True), strict=True)
        cells = [f"{n} {statistics.median(v):.2f}x [{min(v):.2f}-{max(v):.2f}]" for n, v in columns]
        parts.append(f"{mode} {' '.join(cells)}")
    return "; ".join(parts)


# --- one configuration and the report -------------------------------------------------------

HEADERS = {
    "heartbeat": f"hb/s p99<{fmt_ms(HB_P99)}",
    "fleet": "fleet",
    "jobs": "no-op jobs/s",
    "caps": "capped",
    "credentials": "credentials",
}


async def run_config(bench: Bench, args: argparse.Namespace, ceiling: Ceiling) -> list:
    """The configuration's summary row."""
    progress(f"== {label(bench)}: servers on ports {bench.ports}")
    cells: list[str] = []
    for phase in args.phases:
        if phase == "heartbeat":
            top = await ceiling.measure(f"{label(bench)} {phase}")
            cells.append(await heartbeat_cell(bench, args, top))
        elif phase == "jobs":
            top = await ceiling.measure(f"{label(bench)} {phase}")
            cells.append(await jobs_cell(bench, args, top))
        else:
            cell = {"fleet": fleet_cell, "caps": caps_cell, "credentials": credentials_cell}[phase]
            cells.append(await cell(bench, args))
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
        ["config", *(HEADERS[phase] for phase in args.phases), "srv errors"],
        rows,
    )


if __name__ == "__main__":
    install_signal_exit()
    run_async(amain(parse_args()))
