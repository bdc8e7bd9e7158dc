"""Measured scale: heartbeats/s, fleet size and no-op job throughput per backend and replica count.

For each configuration (SQLite or PostgreSQL; one or two replicas on one database, two only on
PostgreSQL) real servers on a fresh database are driven by simulated workers (``_sim``):

1. ``heartbeat``: a closed-loop probe finds the saturation rate X, then open-loop steps offer
   fractions of X; the figure is the highest step answered in full with p99 < 100 ms.
2. ``fleet``: N workers each heartbeat every 10 s (+-10 %, random phase, one kept connection).
   N keeps up if >= 95 % of N/10 beats/s were answered, p99 from the due time <= 1 s, <= 0.1 %
   failed and no ``last_heartbeat`` is older than 1.5 intervals; the figure is the largest N.
3. ``jobs``: no-op jobs taken by 50 simulated workers that report each one done at once:
   (a) submitted while the workers run, (b) a backlog submitted first, then drained.
   ``caps``: the same, with the queue uncapped, capped far above the fleet's slots (the
   cost of enforcing a cap) and capped at 50 (it binds), interleaved round by round; each
   round's ratios to its own uncapped figures (jobs/s and the servers' CPU time per job),
   summed up as their median and range.
4. ``ceiling``: a bare FastAPI endpoint measured right before each phase; each figure is also
   printed as a fraction of it, so results survive a noisy machine.

    .venv/bin/python bench/scale.py                     # sqlite and postgres, 1 and 2
    .venv/bin/python bench/scale.py --quick             # a smoke run
    .venv/bin/python bench/scale.py --backends postgres --replicas 2 --skip fleet
    .venv/bin/python bench/scale.py --skip heartbeat,fleet,jobs   # queue caps' cost only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from _common import (
    Bench,
    fmt_ms,
    fmt_rate,
    git_state,
    install_signal_exit,
    print_table,
    progress,
    server_errors,
    summarize,
)
from _sim import (
    Conn,
    HttpError,
    Outcome,
    Pools,
    Request,
    SimWorker,
    admin_headers,
    closed_loop,
    for_all,
    open_loop,
    register_all,
    run_async,
    sim_workers,
)

from edgefleet.contract import API_PREFIX
from edgefleet.worker.client import KEEPALIVE_SECONDS
from support import ManagedProcess, PgCluster, free_port, fresh_database
from support.processes import spawn

PHASES = ("ceiling", "heartbeat", "fleet", "jobs", "caps")
HB_P99 = 0.100  # the heartbeat phase's p99 bound (s)
FLEET_INTERVAL, FLEET_P99 = 10.0, 1.0
JOB_WORKERS, JOB_SLOTS, SUBMITTERS, BATCH = 50, 8, 32, 50


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--backends", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    add("--replicas", default="1,2", help="replica counts (2 only on postgres)")
    add("--quick", action="store_true", help="short steps and small fleets: a smoke run")
    add("--skip", default="", help=f"comma-separated phases to skip: {','.join(PHASES)}")
    add("--fleet-sizes", help="comma-separated fleet sizes to step through")
    add("--keep", action="store_true", help="keep temporary homes")
    add("--cap-rounds", type=int, default=3, help="caps phase: rounds of the three modes")
    args = parser.parse_args(argv)
    args.backend_list = _csv(args.backends)
    args.replica_list = [int(r) for r in _csv(args.replicas)]
    args.skip = set(_csv(args.skip))
    if bad := (set(args.backend_list) - {"sqlite", "postgres"}) | (args.skip - set(PHASES)):
        parser.error(f"unknown backends or phases {sorted(bad)}")
    if any(r not in (1, 2) for r in args.replica_list):
        parser.error("--replicas: 1 and/or 2")
    defaults(args)
    return args


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def defaults(args: argparse.Namespace) -> None:
    """The sizes of a run: short for --quick, the full run otherwise."""
    quick = args.quick
    args.hb_workers, args.hb_seconds = (200, 2.0) if quick else (1000, 5.0)
    sizes = getattr(args, "fleet_sizes", None) or ("300,1000" if quick else "1000,2500,5000,10000")
    args.fleet_size_list = [int(n) for n in _csv(sizes)]
    args.fleet_window = 13.0 if quick else 30.0
    args.jobs = 500 if quick else 3000
    args.ceiling_seconds = 2.0 if quick else 5.0


@dataclass
class Deployment:
    """One configuration: a fresh database and 1..2 server replicas on it."""

    backend: str
    bench: Bench
    db_url: str

    @property
    def ports(self) -> list[int]:
        return [int(s.url.rsplit(":", 1)[1]) for s in self.bench.servers]

    @property
    def label(self) -> str:
        return f"{self.backend} x{len(self.bench.servers)}"


@contextlib.contextmanager
def deployment(backend: str, replicas: int, pg_url: str, keep: bool):
    with contextlib.ExitStack() as stack:  # servers stop before their database is dropped
        db_url = ""
        if backend == "postgres":
            db_url = stack.enter_context(fresh_database(Path("."), server_url=pg_url))
        bench = stack.enter_context(Bench(keep))
        db_url = db_url or f"sqlite:///{bench.home}/edgefleet.db"
        for _ in range(replicas):
            bench.start_server(db_url)
        yield Deployment(backend, bench, db_url)


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
        self.seconds = seconds
        port = free_port()
        log = bench.home / "ceiling.log"
        argv = [sys.executable, "-c", BARE_APP, str(port)]
        self.proc = bench.registry.add(ManagedProcess("ceiling", argv, spawn(argv, {}, log), log))
        self.pools = Pools([port])

    async def measure(self, label: str) -> float:
        deadline = time.monotonic() + 30
        while (await self.pools.send(0, PING))[0] != 200:
            if time.monotonic() > deadline or not self.proc.alive():
                raise RuntimeError(f"the bare FastAPI app does not answer:\n{self.proc.log_tail()}")
            await asyncio.sleep(0.1)
        out = await closed_loop(self.pools, lambda i: PING, 32, self.seconds)
        progress(f"ceiling ({label}): {out.rate:.0f} req/s")
        return out.rate


# --- phase: heartbeats per second -----------------------------------------------------------

STEP_FRACTIONS = (0.25, 0.5, 0.7, 0.85, 1.0, 1.15)


def hb_passes(step: Outcome) -> bool:
    enough = step.answered >= 0.95 * step.offered * step.seconds
    return enough and step.lat.p99 < HB_P99 and step.failed == 0


async def measure_heartbeats(
    dep: Deployment, args: argparse.Namespace, workers: list[SimWorker] | None = None
) -> Outcome | None:
    """The best passing open-loop step below and around the closed-loop saturation rate.
    ``workers``: registered simulated workers (default: new ones signing with the secret)."""
    pools = Pools(dep.ports)
    try:
        if workers is None:
            workers = sim_workers(dep.bench.secret, "hb", args.hb_workers)
            await register_all(pools, workers, "hb", 2, 10.0)

        def make(i: int) -> Request:
            return workers[i % len(workers)].heartbeat()

        probe = await closed_loop(pools, make, 32, args.hb_seconds)
        progress(f"{dep.label} heartbeat probe: {probe.rate:.0f}/s p99 {fmt_ms(probe.lat.p99)}")
        best, missed_once = None, False
        fractions = list(STEP_FRACTIONS)
        while fractions:
            await asyncio.sleep(0.5)
            rate = probe.rate * fractions[0]
            step = await open_loop(pools, make, rate, args.hb_seconds)
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


# --- phase: fleet at a 10 s heartbeat -------------------------------------------------------


@dataclass
class FleetStep:
    size: int
    scheduled: int
    failed: int
    latencies: list[float]
    stale: int
    rate: float  # beats answered per second of the window

    @property
    def expected(self) -> float:
        return self.size / FLEET_INTERVAL

    def keeps_up(self) -> bool:
        return (
            self.rate >= 0.95 * self.expected
            and summarize(self.latencies).p99 <= FLEET_P99
            and self.failed <= 0.001 * max(1, self.scheduled)
            and self.stale == 0
        )

    def text(self) -> str:
        p99 = fmt_ms(summarize(self.latencies).p99)
        verdict = "ok" if self.keeps_up() else "BEHIND"
        return f"{self.size} {verdict} ({self.rate:.0f}/{self.expected:.0f} beats/s, p99 {p99})"


async def beat_forever(worker: SimWorker, port: int, t0: float, until: float, tally: dict):
    """Heartbeat every interval +-10 % from a random phase over one kept connection; a late
    answer makes the next beat due at once."""
    due = t0 + random.uniform(0, FLEET_INTERVAL)
    conn = Conn(port, keepalive=KEEPALIVE_SECONDS)
    while due < until:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tally["scheduled"] += 1
        try:
            ok = (await conn.request(worker.heartbeat(), timeout=30))[0] < 300
        except HttpError:
            ok = False
        if ok:
            tally["latencies"].append(time.monotonic() - due)
        else:
            tally["failed"] += 1
        due = max(due + FLEET_INTERVAL * random.uniform(0.9, 1.1), time.monotonic())
    conn.close()


def stale_workers(db_url: str, prefix: str, older_than: float) -> int:
    """Workers whose last heartbeat is older than ``older_than`` s."""
    from sqlalchemy import create_engine, select

    from edgefleet.db.models import Worker

    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            query = select(Worker.last_heartbeat).where(Worker.hostname.like(f"{prefix}%"))
            beats = connection.scalars(query).all()
    finally:
        engine.dispose()
    now = datetime.now(UTC)
    return sum(1 for b in beats if not b or (now - b).total_seconds() > older_than)


async def measure_fleet(dep: Deployment, args: argparse.Namespace) -> list[FleetStep]:
    """Step the fleet size up until a step falls behind (or all sizes pass)."""
    workers: list[SimWorker] = []
    steps: list[FleetStep] = []
    for size in args.fleet_size_list:
        pools = Pools(dep.ports)
        new = sim_workers(dep.bench.secret, "fl", size, start=len(workers))
        await register_all(pools, new, "fleet", 2, FLEET_INTERVAL)
        pools.close()
        workers += new
        tally: dict = {"scheduled": 0, "failed": 0, "latencies": []}
        ports, t0 = dep.ports, time.monotonic()
        until = t0 + args.fleet_window
        await asyncio.gather(
            *(
                beat_forever(w, ports[i % len(ports)], t0, until, tally)
                for i, w in enumerate(workers)
            )
        )
        stale = await asyncio.to_thread(stale_workers, dep.db_url, "fl", 1.5 * FLEET_INTERVAL)
        rate = len(tally["latencies"]) / args.fleet_window
        step = FleetStep(
            len(workers), tally["scheduled"], tally["failed"], tally["latencies"], stale, rate
        )
        steps.append(step)
        progress(f"{dep.label} fleet {step.text()}, stale {stale}")
        if not step.keeps_up():
            break
    return steps


# --- phase: no-op job throughput ------------------------------------------------------------


@dataclass
class JobRun:
    """One job measurement; times are ``time.monotonic()``."""

    jobs: int
    first_submit: float = math.nan
    workers_start: float = math.nan
    last_done: float = math.nan
    failed: int = 0
    done_ids: set[int] = field(default_factory=set)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def per_second(self, start: float) -> float:
        return self.jobs / (self.last_done - start) if self.last_done > start else math.nan


async def job_worker(worker: SimWorker, conn: Conn, run: JobRun) -> None:
    """Fetch with every slot free, report each claimed job a success at once, long-poll when
    nothing came (as the agent does). A lost fetch answer is asked again with the same seq."""
    again = False
    while not run.done.is_set():
        try:
            status, answer = await conn.request(worker.fetch(JOB_SLOTS, again), timeout=60)
        except HttpError:
            status, answer = 0, b""
        again = status == 0 or status >= 500
        if status != 200:
            run.failed += 1
            await asyncio.sleep(0.05)
            continue
        jobs = worker.apply(answer)["jobs"]
        if jobs:
            await report_success(worker, conn, jobs, run)
            continue
        while not run.done.is_set():  # long-poll until the server answers "work"
            try:
                status, answer = await conn.request(worker.watch(JOB_SLOTS, 2.0), timeout=30)
            except HttpError:
                break
            if status != 200 or worker.apply(answer).get("reason") in (None, "work"):
                break


async def report_success(worker: SimWorker, conn: Conn, jobs: list[dict], run: JobRun) -> None:
    try:
        status, answer = await conn.request(worker.results(jobs), timeout=30)
    except HttpError:
        status = 0
    if status >= 300 or status == 0:
        run.failed += len(jobs)
        return
    for job, outcome in zip(jobs, json.loads(answer)["outcomes"], strict=True):
        if outcome["status_code"] >= 300:
            run.failed += 1
        else:
            run.done_ids.add(job["id"])  # a repeated report (answer lost) counts once
    run.last_done = time.monotonic()
    if len(run.done_ids) >= run.jobs:
        run.done.set()


async def submit_jobs(pools: Pools, secret: str, run: JobRun) -> None:
    job = {"command": ["true"], "queue": "noop"}
    sizes = [min(BATCH, run.jobs - start) for start in range(0, run.jobs, BATCH)]
    path, headers = f"{API_PREFIX}/jobs/batch", admin_headers(secret)
    run.first_submit = time.monotonic()
    await for_all(pools, [("POST", path, headers, {"jobs": [job] * n}) for n in sizes], SUBMITTERS)


async def work_off(dep: Deployment, workers: list[SimWorker], run: JobRun) -> None:
    """Run the job workers until ``run`` is complete (or its time is up), then stop them."""
    ports = dep.ports
    conns = [Conn(ports[i % len(ports)]) for i in range(len(workers))]
    run.workers_start = time.monotonic()
    tasks = [
        asyncio.create_task(job_worker(w, c, run)) for w, c in zip(workers, conns, strict=True)
    ]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run.done.wait(), max(60.0, run.jobs / 20))
    if not run.done.is_set():
        progress(f"  jobs: only {len(run.done_ids)}/{run.jobs} completed in time")
    run.done.set()
    _, late = await asyncio.wait(tasks, timeout=10.0)
    for task in late:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for conn in conns:
        conn.close()


async def job_rates(
    dep: Deployment, pools: Pools, workers: list[SimWorker], jobs: int, label: str = ""
) -> tuple[float, float]:
    """(end to end jobs/s: submitted while the workers run, drain jobs/s of a backlog)."""
    e2e, backlog = JobRun(jobs), JobRun(jobs)
    await asyncio.gather(work_off(dep, workers, e2e), submit_jobs(pools, dep.bench.secret, e2e))
    await submit_jobs(pools, dep.bench.secret, backlog)
    await work_off(dep, workers, backlog)
    rates = e2e.per_second(e2e.first_submit), backlog.per_second(backlog.workers_start)
    failed = e2e.failed + backlog.failed
    progress(
        f"{dep.label} jobs{label} end to end {rates[0]:.0f}/s, drain {rates[1]:.0f}/s, "
        f"failed {failed}"
    )
    return rates


async def measure_jobs(dep: Deployment, args: argparse.Namespace) -> tuple[float, float]:
    workers = sim_workers(dep.bench.secret, "jw", JOB_WORKERS)
    pools = Pools(dep.ports)
    try:
        await register_all(pools, workers, "noop", JOB_SLOTS)
        return await job_rates(dep, pools, workers, args.jobs)
    finally:
        pools.close()


# --- phase: the same no-op jobs under a queue cap --------------------------------------------

#: The caps compared: none; one far above the fleet's slots (never binds, so any difference
#: is what enforcing it costs); one at a worker's share (binds now and then).
CAP_MODES = (("none", None), ("loose", JOB_WORKERS * JOB_SLOTS * 10), ("tight", JOB_WORKERS))


async def set_cap(pools: Pools, secret: str, cap: int | None) -> None:
    body = {"reset": True} if cap is None else {"concurrency": cap}
    request = ("PUT", f"{API_PREFIX}/queues/noop", admin_headers(secret), body)
    status, answer = await pools.send(0, request)
    if status != 200:
        raise RuntimeError(f"setting the cap failed: {status} {answer[:200]!r}")


@dataclass
class CapRound:
    """One mode's figures in one round: jobs/s end to end and drained, and the servers' CPU
    time per job (user+sys, ms): the figure a busy shared host disturbs least."""

    e2e: float
    drain: float
    cpu_ms: float


def server_cpu_seconds(dep: Deployment) -> float:
    """User+sys CPU seconds the deployment's servers used so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for server in dep.bench.servers:
        fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / tick


async def measure_caps(dep: Deployment, args: argparse.Namespace) -> list[dict[str, CapRound]]:
    """Each round's figures per cap mode, the modes interleaved round by round so the host's
    drift weighs on each alike; a round's ratios to its own uncapped figures are what count."""
    workers = sim_workers(dep.bench.secret, "cw", JOB_WORKERS)
    pools = Pools(dep.ports)
    rounds: list[dict[str, CapRound]] = []
    try:
        await register_all(pools, workers, "noop", JOB_SLOTS)
        for n in range(args.cap_rounds):
            one: dict[str, CapRound] = {}
            for mode, cap in CAP_MODES:
                await set_cap(pools, dep.bench.secret, cap)
                cpu = server_cpu_seconds(dep)
                e2e, drain = await job_rates(dep, pools, workers, args.jobs, f" (cap {mode})")
                cpu_ms = (server_cpu_seconds(dep) - cpu) * 1000 / (2 * args.jobs)
                one[mode] = CapRound(e2e, drain, cpu_ms)
            rounds.append(one)
            progress(f"{dep.label} caps round {n + 1}: {round_ratios(one)}")
        return rounds
    finally:
        pools.close()


def _ratios(one: dict[str, CapRound], mode: str) -> tuple[float, float, float]:
    """A mode's (e2e, drain, CPU per job) over the same round's uncapped figures."""
    base, capped = one["none"], one[mode]
    return capped.e2e / base.e2e, capped.drain / base.drain, capped.cpu_ms / base.cpu_ms


def round_ratios(one: dict[str, CapRound]) -> str:
    base = one["none"]
    parts = [f"none e2e {base.e2e:.0f}/s drain {base.drain:.0f}/s cpu {base.cpu_ms:.2f} ms/job"]
    for mode, _ in CAP_MODES[1:]:
        e2e, drain, cpu = _ratios(one, mode)
        parts.append(f"{mode} e2e {e2e:.2f}x drain {drain:.2f}x cpu {cpu:.2f}x")
    return "; ".join(parts)


def caps_cell(rounds: list[dict[str, CapRound]]) -> str:
    """Per capped mode: the median of the rounds' ratios to their uncapped figures, with
    their range."""
    parts = []
    for mode, _ in CAP_MODES[1:]:
        columns = zip(*(_ratios(one, mode) for one in rounds), strict=True)
        cells = [
            f"{name} {statistics.median(vals):.2f}x [{min(vals):.2f}-{max(vals):.2f}]"
            for name, vals in zip(("e2e", "drain", "cpu/job"), columns, strict=True)
        ]
        parts.append(f"{mode} {' '.join(cells)}")
    return "; ".join(parts)


# --- one configuration and the report -------------------------------------------------------


def frac(value: float | None, ceiling: float | None) -> str:
    ok = value is not None and ceiling and math.isfinite(value) and math.isfinite(ceiling)
    return f"{value / ceiling:.3f}" if ok else "-"


async def run_config(dep: Deployment, args: argparse.Namespace, ceiling: Ceiling | None) -> list:
    """The configuration's summary row; each figure with its fraction of the ceiling."""
    progress(f"== {dep.label}: servers on ports {dep.ports}")
    cells: dict[str, str] = {}
    for phase in PHASES[1:]:
        if phase in args.skip:
            cells[phase] = "-"
            continue
        top = await ceiling.measure(f"{dep.label} {phase}") if ceiling else None
        cap = f" / {top:.0f}" if top else ""
        if phase == "heartbeat":
            best = await measure_heartbeats(dep, args)
            rate = best.rate if best else None
            cells[phase] = (
                f"{fmt_rate(rate)} p99 {fmt_ms(best and best.lat.p99)} ({frac(rate, top)}{cap})"
            )
        elif phase == "fleet":
            steps = await measure_fleet(dep, args)
            kept = [s for s in steps if s.keeps_up()]
            cells[phase] = "; ".join(s.text() for s in ([kept[-1]] if kept else []) + [
                s for s in steps if not s.keeps_up()])  # fmt: skip
        elif phase == "jobs":
            e2e, drain = await measure_jobs(dep, args)
            cells[phase] = f"e2e {fmt_rate(e2e)}, drain {fmt_rate(drain)} ({frac(e2e, top)}{cap})"
        else:
            cells[phase] = caps_cell(await measure_caps(dep, args))
    errors = [line for server in dep.bench.servers for line in server_errors(server)]
    for line in errors[:5]:
        progress(f"  server error: {line}")
    return [dep.label, *cells.values(), len(errors)]


async def amain(args: argparse.Namespace) -> None:
    random.seed(1)
    configs = [
        (b, r) for b in args.backend_list for r in args.replica_list if r == 1 or b == "postgres"
    ]
    rows = []
    with contextlib.ExitStack() as stack:
        pg_url = ""
        if any(b == "postgres" for b, _ in configs):
            cluster = stack.enter_context(PgCluster(keep=args.keep))
            pg_url = cluster.url
        ceiling = None
        if "ceiling" not in args.skip:
            ceiling = Ceiling(stack.enter_context(Bench(args.keep)), args.ceiling_seconds)
        for backend, replicas in configs:
            with deployment(backend, replicas, pg_url, args.keep) as dep:
                rows.append(await run_config(dep, args, ceiling))
        if ceiling is not None:
            ceiling.pools.close()
    print(f"\nmeasured scale; code: {git_state()}; quick={args.quick}")
    print_table(
        f"SUMMARY ((fraction of / the bare endpoint's req/s) measured right before the phase; "
        f"fleet at a {FLEET_INTERVAL:g} s heartbeat: the largest N that kept up, then any behind)",
        ["config", f"hb/s p99<{fmt_ms(HB_P99)}", "fleet", "no-op jobs/s", "capped", "srv errors"],
        rows,
    )


if __name__ == "__main__":
    install_signal_exit()
    run_async(amain(parse_args()))
