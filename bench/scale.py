"""Measured scale: heartbeats/s, fleet size and no-op job throughput per backend and replica count.

For each configuration (SQLite or PostgreSQL; one or two replicas on one database, two only on
PostgreSQL) real servers on a fresh database are driven by simulated workers (``_sim``).
Phases (``--phases``):

1. ``heartbeat``: a closed-loop probe finds the saturation rate X, then open-loop steps offer
   fractions of X; the figure is the highest step answered in full with p99 < 100 ms.
2. ``fleet``: N workers each heartbeat every 10 s (+-10 %, random phase, one kept connection).
   N keeps up if >= 95 % of N/10 beats/s were answered, p99 from the due time <= 1 s, <= 0.1 %
   failed and no ``last_heartbeat`` is older than 1.5 intervals; the figure is the largest N.
3. ``jobs``: no-op jobs taken by 50 simulated workers that report each one done at once:
   (a) submitted while the workers run, (b) a backlog submitted first, then drained.
4. ``caps``: the same, with the queue uncapped, capped far above the fleet's slots (the cost
   of enforcing a cap) and capped at 50 (it binds), interleaved over ``--rounds`` rounds
   (each starting one mode later: use 3, 6, ...); each round's ratios to its own uncapped
   figures (jobs/s and the servers' CPU per job).
5. ``credentials`` (not run by default): the heartbeat phase for workers that each enrolled
   and send their own credential against workers signing with the shared secret,
   alternating over ``--rounds`` rounds (ABBA) so drift hits both alike; medians.
6. ``ceiling``: a bare FastAPI endpoint measured right before each phase; each figure is also
   printed as a fraction of it, so results survive a noisy machine.

    .venv/bin/python bench/scale.py                     # sqlite and postgres, 1 and 2
    .venv/bin/python bench/scale.py --quick             # a smoke run
    .venv/bin/python bench/scale.py --backends sqlite --replicas 1 --phases caps
    .venv/bin/python bench/scale.py --backends sqlite --replicas 1 --phases credentials
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
    register_all,
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

PHASES = ("ceiling", "heartbeat", "fleet", "jobs", "caps", "credentials")
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
    args.backends, args.phases = _csv(args.backends), set(_csv(args.phases))
    args.replicas = [int(r) for r in _csv(args.replicas)]
    if bad := (set(args.backends) - {"sqlite", "postgres"}) | (args.phases - set(PHASES)):
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


# --- ceiling: a bare FastAPI endpoint -------------------------------------------------------

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


def hb_passes(step: Outcome) -> bool:
    enough = step.answered >= 0.95 * step.offered * step.seconds
    return enough and step.lat.p99 < HB_P99 and step.failed == 0


async def measure_heartbeats(
    bench: Bench, args: argparse.Namespace, workers: list[SimWorker]
) -> Outcome | None:
    """The best passing open-loop step below and around the closed-loop saturation rate of
    ``workers`` (registered) heartbeating."""
    pools = Pools(bench.ports)
    try:

        def make(i: int) -> Request:
            return workers[i % len(workers)].heartbeat()

        probe = await closed_loop(pools, make, 32, args.hb_seconds)
        progress(f"{label(bench)} heartbeat probe: {probe.rate:.0f}/s p99 {fmt_ms(probe.lat.p99)}")
        best, missed_once, fractions = None, False, list(STEP_FRACTIONS)
        while fractions:
            await asyncio.sleep(0.5)
            step = await open_loop(pools, make, probe.rate * fractions[0], args.hb_seconds)
            passed = hb_passes(step)
            progress(
                f"  offered {step.offered:.0f}/s: {step.rate:.0f}/s p99 {fmt_ms(step.lat.p99)} "
                f"failed {step.failed} {'ok' if passed else 'over'}"
            )
            if passed:
                best = step
                fractions.pop(0)
            elif missed_once:  # the second miss in a row is the server, not a hiccup
                break
            missed_once = not passed
        return best
    finally:
        pools.close()


async def heartbeat_cell(bench: Bench, args: argparse.Namespace, top: float | None) -> str:
    workers = sim_workers(bench.secret, "hb", args.hb_workers)
    pools = Pools(bench.ports)
    await register_all(pools, workers, "hb", 2, 10.0)
    pools.close()
    best = await measure_heartbeats(bench, args, workers)
    rate = best.rate if best else None
    return f"{fmt_rate(rate)} p99 {fmt_ms(best and best.lat.p99)} ({frac(rate, top)})"


class Credential:
    """A signer that sends the worker's own credential, as the real worker does."""

    def __init__(self, credential: str) -> None:
        self.credential = credential

    def token(self) -> str:
        return self.credential


async def enroll_all(pools: Pools, secret: str, count: int) -> list[SimWorker]:
    """``count`` workers enrolled with one join token, each with its own credential."""
    body = {"uses": count, "ttl_seconds": 3600}
    request = ("POST", f"{API_PREFIX}/tokens/join", admin_headers(secret), body)
    (answer,) = await for_all(pools, [request], 1)
    headers = {"Authorization": f"Bearer {SimWorker('', None).apply(answer)['token']}"}
    names = [f"cred{i:05d}" for i in range(count)]
    path = f"{API_PREFIX}/edge/enroll"
    answers = await for_all(pools, [("POST", path, headers, {"hostname": n}) for n in names])
    credentials = [SimWorker("", None).apply(a)["credential"] for a in answers]
    return [SimWorker(n, Credential(c)) for n, c in zip(names, credentials, strict=True)]


async def credentials_cell(bench: Bench, args: argparse.Namespace) -> str:
    """Per-worker credentials against shared-secret tokens: medians of the ABBA rounds."""
    pools = Pools(bench.ports)
    fleets = {
        "secret": sim_workers(bench.secret, "hb", args.hb_workers),
        "credential": await enroll_all(pools, bench.secret, args.hb_workers),
    }
    for workers in fleets.values():
        await register_all(pools, workers, "hb", 2, 10.0)
    pools.close()
    rates: dict[str, list[float]] = {"secret": [], "credential": []}
    for round_ in range(args.rounds):
        for kind, workers in list(fleets.items())[:: -1 if round_ % 2 else 1]:
            best = await measure_heartbeats(bench, args, workers)
            rates[kind].append(best.rate if best else 0.0)
            progress(
                f"{label(bench)} credentials round {round_ + 1} {kind}: {rates[kind][-1]:.0f}/s"
            )
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

    @property
    def expected(self) -> float:
        return self.size / FLEET_INTERVAL

    def keeps_up(self) -> bool:
        return (
            len(self.tally.beats) / self.window >= 0.95 * self.expected
            and summarize(self.tally.beats).p99 <= FLEET_P99
            and sum(self.tally.errors.values()) <= 0.001 * max(1, self.tally.scheduled)
            and self.stale == 0
        )

    def text(self) -> str:
        rate, p99 = len(self.tally.beats) / self.window, fmt_ms(summarize(self.tally.beats).p99)
        verdict = "ok" if self.keeps_up() else "BEHIND"
        return f"{self.size} {verdict} ({rate:.0f}/{self.expected:.0f} beats/s, p99 {p99})"


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
    """Step the fleet size up until a step falls behind (or all sizes pass): the largest
    that kept up, then any behind."""
    fleet = Fleet(bench.secret, bench.ports, FLEET_INTERVAL, keepalive=KEEPALIVE_SECONDS)
    steps: list[FleetStep] = []
    try:
        for size in args.fleet_sizes:
            await fleet.add([f"fl{i:05d}" for i in range(len(fleet.agents), size)], "fleet")
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


async def submit_jobs(pools: Pools, secret: str, jobs: int) -> None:
    job = {"command": ["true"], "queue": "noop"}
    sizes = [min(BATCH, jobs - start) for start in range(0, jobs, BATCH)]
    path, headers = f"{API_PREFIX}/jobs/batch", admin_headers(secret)
    await for_all(pools, [("POST", path, headers, {"jobs": [job] * n}) for n in sizes], SUBMITTERS)


async def work_off(fleet: Fleet, jobs: int, submit: bool, pools: Pools) -> float:
    """Jobs/s of the agents taking ``jobs`` no-op jobs: submitted while they run (``submit``),
    counted from the first submission, or a backlog, counted from the agents' start."""
    fleet.tally = Tally()
    tasks = fleet.start(agent.dispatch(2.0) for agent in fleet.agents.values())
    start = time.monotonic()
    if submit:
        await submit_jobs(pools, fleet.secret, jobs)
    if not await within(lambda: len(fleet.tally.done) >= jobs, max(60.0, jobs / 20)):
        progress(f"  jobs: only {len(fleet.tally.done)}/{jobs} completed in time")
    await fleet.stop(tasks)
    return jobs / (fleet.tally.last_done - start)


async def job_rates(bench: Bench, fleet: Fleet, jobs: int, name: str = "") -> tuple[float, float]:
    """(end to end jobs/s: submitted while the workers run, drain jobs/s of a backlog)."""
    pools = Pools(bench.ports)
    try:
        e2e = await work_off(fleet, jobs, True, pools)
        errors = sum(fleet.tally.errors.values())
        await submit_jobs(pools, bench.secret, jobs)
        drain = await work_off(fleet, jobs, False, pools)
    finally:
        pools.close()
    errors += sum(fleet.tally.errors.values())
    progress(
        f"{label(bench)} jobs{name} end to end {e2e:.0f}/s, drain {drain:.0f}/s, errors {errors}"
    )
    return e2e, drain


async def job_fleet(bench: Bench, prefix: str) -> Fleet:
    """Simulated workers with ``JOB_SLOTS`` free slots each (names of their own per phase:
    the last phase's are still registered)."""
    fleet = Fleet(bench.secret, bench.ports, FLEET_INTERVAL, slots=JOB_SLOTS)
    await fleet.add([f"{prefix}{i:05d}" for i in range(JOB_WORKERS)], "noop")
    return fleet


async def jobs_cell(bench: Bench, args: argparse.Namespace, top: float | None) -> str:
    fleet = await job_fleet(bench, "jw")
    try:
        e2e, drain = await job_rates(bench, fleet, args.jobs)
    finally:
        await fleet.close()
    return f"e2e {fmt_rate(e2e)}, drain {fmt_rate(drain)} ({frac(e2e, top)})"


async def caps_cell(bench: Bench, args: argparse.Namespace) -> str:
    """Each round's figures per cap mode, interleaved round by round so the host's drift
    weighs on each alike; per capped mode the median of the rounds' ratios to their own
    uncapped figures (jobs/s end to end and drained, servers' CPU per job), with the range.
    Each round starts one mode later (none-loose-tight, loose-tight-none, ...): in any three
    rounds every mode runs once in each place, on a database as large (each run leaves its
    jobs behind) and a server as warm as the others."""
    fleet, pools = await job_fleet(bench, "cw"), Pools(bench.ports)
    pids = [server.pid for server in bench.servers]
    ratios: dict[str, list[tuple[float, float, float]]] = {m: [] for m, _ in CAP_MODES[1:]}
    try:
        for n in range(args.rounds):
            one: dict[str, tuple[float, float, float]] = {}
            first = n % len(CAP_MODES)
            for mode, cap in CAP_MODES[first:] + CAP_MODES[:first]:
                body = {"reset": True} if cap is None else {"concurrency": cap}
                request = ("PUT", f"{API_PREFIX}/queues/noop", admin_headers(bench.secret), body)
                await for_all(pools, [request], 1)
                cpu = session_cpu(*pids)
                e2e, drain = await job_rates(bench, fleet, args.jobs, f" (cap {mode})")
                one[mode] = (e2e, drain, (session_cpu(*pids) - cpu) / (2 * args.jobs))
            for mode, rounds in ratios.items():
                base = one["none"]
                rounds.append(tuple(c / b for c, b in zip(one[mode], base, strict=True)))
            text = ", ".join(
                f"{m} {r[-1][0]:.2f}x {r[-1][1]:.2f}x {r[-1][2]:.2f}x" for m, r in ratios.items()
            )
            progress(f"{label(bench)} caps round {n + 1}, e2e drain cpu/job against none: {text}")
    finally:
        pools.close()
        await fleet.close()
    parts = []
    for mode, rounds in ratios.items():
        columns = zip(("e2e", "drain", "cpu/job"), zip(*rounds, strict=True), strict=True)
        cells = [f"{n} {statistics.median(v):.2f}x [{min(v):.2f}-{max(v):.2f}]" for n, v in columns]
        parts.append(f"{mode} {' '.join(cells)}")
    return "; ".join(parts)


# --- one configuration and the report -------------------------------------------------------


def frac(value: float | None, ceiling: float | None) -> str:
    ok = value is not None and ceiling and math.isfinite(value) and math.isfinite(ceiling)
    return f"{value / ceiling:.3f} of {ceiling:.0f}" if ok else "-"


async def run_config(bench: Bench, args: argparse.Namespace, ceiling: Ceiling | None) -> list:
    """The configuration's summary row; each figure with its fraction of the ceiling."""
    progress(f"== {label(bench)}: servers on ports {bench.ports}")
    cells: dict[str, str] = {}
    for phase in PHASES[1:]:
        if phase not in args.phases:
            cells[phase] = "-"
            continue
        top = await ceiling.measure(f"{label(bench)} {phase}") if ceiling else None
        if phase == "heartbeat":
            cells[phase] = await heartbeat_cell(bench, args, top)
        elif phase == "fleet":
            cells[phase] = await fleet_cell(bench, args)
        elif phase == "jobs":
            cells[phase] = await jobs_cell(bench, args, top)
        elif phase == "caps":
            cells[phase] = await caps_cell(bench, args)
        else:
            cells[phase] = await credentials_cell(bench, args)
    for line in bench.errors()[:5]:
        progress(f"  server error: {line}")
    return [label(bench), *cells.values(), len(bench.errors())]


async def amain(args: argparse.Namespace) -> None:
    random.seed(1)
    configs = [(b, r) for b in args.backends for r in args.replicas if r == 1 or b == "postgres"]
    rows = []
    with contextlib.ExitStack() as stack:
        if any(b == "postgres" for b, _ in configs):
            pg_url = stack.enter_context(postgres_server())
        ceiling = None
        if "ceiling" in args.phases:
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
        if ceiling is not None:
            ceiling.pools.close()
    print(f"\nmeasured scale; code: {git_state()}; quick={args.quick}")
    print_table(
        f"SUMMARY ((fraction of the bare endpoint's req/s) measured right before the phase; "
        f"fleet at a {FLEET_INTERVAL:g} s heartbeat: the largest N that kept up, then any behind)",
        ["config", f"hb/s p99<{fmt_ms(HB_P99)}", "fleet", "no-op jobs/s", "capped", "credentials"]
        + ["srv errors"],
        rows,
    )


if __name__ == "__main__":
    install_signal_exit()
    run_async(amain(parse_args()))
