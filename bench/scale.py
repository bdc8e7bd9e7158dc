"""Measured scale: heartbeats/s, fleet size and no-op job throughput per backend and replica count.

For each configuration (SQLite or PostgreSQL; one or two ``edgefleet server`` replicas, two
only on PostgreSQL, both on one database) this starts real server processes on a fresh
database and drives them with simulated workers (``_sim``; requests spread round-robin over
the replicas):

1. ``heartbeat``: the highest rate of heartbeats one deployment sustains with p99 under
   ``--hb-p99`` (100 ms). A closed-loop probe finds the saturation rate X, then open-loop steps
   offer fractions of X; a step passes if p99 < 100 ms and >= 95 % of the offered rate was
   answered. The figure is the highest passing step's achieved rate.
2. ``fleet``: N workers (stepped, default 1000, 2500, 5000, 10000) each heartbeat every 10 s
   (+-10 % jitter, random phase, one connection kept open between beats as the worker's
   client does; a late answer makes the next beat due at once). A step *keeps up* if it
   answered >= 95 % of N/10 beats/s, p99 from the beat's due time <= ``--fleet-p99`` (1 s),
   <= 0.1 % failed, and no worker's ``last_heartbeat`` is older than 1.5 intervals at the end.
   The figure is the largest N that kept up.
3. ``jobs``: no-op jobs. ``--job-workers`` simulated workers fetch with ``--job-slots`` free
   slots, report every claimed job ``success`` at once (all of a fetch in one request) and
   long-poll when nothing is queued. (a) end to end: jobs submitted (``--batch`` per POST
   /jobs/batch, ``--submitters`` in parallel) while the workers run. (b) the same number
   submitted with no worker running, then drained: dispatch+complete jobs/s.
4. ``ceiling``: a bare FastAPI app (one ``async def`` endpoint) under uvicorn, closed loop
   with the same client, measured right before each phase; each figure is also printed as a
   fraction of it, so results survive a noisy machine.

CPU (in cores) is reported for the replicas, this process, the PostgreSQL cluster and
everything else; whichever is near its limit bounded the figure.

    .venv/bin/python bench/scale.py                     # sqlite and postgres, 1 and 2
    .venv/bin/python bench/scale.py --quick             # a smoke run
    .venv/bin/python bench/scale.py --backends postgres --replicas 2 --skip fleet
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from _common import (
    Bench,
    Load,
    fmt_ms,
    fmt_rate,
    git_state,
    install_signal_exit,
    print_table,
    progress,
    server_errors,
    summarize,
    wait_for_quiet_host,
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

PHASES = ("ceiling", "heartbeat", "fleet", "jobs")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--backends", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    add("--replicas", default="1,2", help="replica counts (2 only on postgres)")
    add("--quick", action="store_true", help="short steps and small fleets: a smoke run")
    add("--skip", default="", help=f"comma-separated phases to skip: {','.join(PHASES)}")
    add("--pg-url", help="an existing PostgreSQL server (else a throwaway cluster is started)")
    add("--hb-workers", type=int, help="registered workers the heartbeat phase rotates over")
    add("--hb-seconds", type=float, help="seconds per heartbeat step")
    add("--hb-p99", type=float, default=0.100, help="p99 bound of the heartbeat phase (s)")
    add("--fleet-sizes", help="comma-separated fleet sizes to step through")
    add("--fleet-window", type=float, help="seconds each fleet step is measured")
    add("--fleet-interval", type=float, default=10.0, help="heartbeat interval of the fleet")
    add("--fleet-p99", type=float, default=1.0, help="p99 bound of the fleet phase (s)")
    add("--jobs", type=int, help="no-op jobs per job measurement")
    add("--job-workers", type=int, default=50, help="simulated workers taking jobs")
    add("--job-slots", type=int, default=8, help="free slots each job worker fetches with")
    add("--submitters", type=int, default=32, help="parallel job submissions")
    add("--batch", type=int, default=50, help="jobs per POST /jobs/batch")
    add("--ceiling-seconds", type=float, help="seconds of each ceiling measurement")
    add("--quiet-host", type=float, metavar="CORES", help="wait until others use fewer cores")
    add("--keep", action="store_true", help="keep temporary homes")
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
    """Fill the sizing options left unset: short for --quick, the full run otherwise."""
    quick = args.quick
    args.hb_workers = args.hb_workers or (200 if quick else 1000)
    args.hb_seconds = args.hb_seconds or (2.0 if quick else 5.0)
    sizes = getattr(args, "fleet_sizes", None) or ("300,1000" if quick else "1000,2500,5000,10000")
    args.fleet_size_list = [int(n) for n in _csv(sizes)]
    args.fleet_window = getattr(args, "fleet_window", None) or (13.0 if quick else 30.0)
    args.jobs = getattr(args, "jobs", None) or (500 if quick else 3000)
    args.ceiling_seconds = getattr(args, "ceiling_seconds", None) or (2.0 if quick else 5.0)


@dataclass
class Deployment:
    """One configuration: a fresh database and 1..2 server replicas on it."""

    backend: str
    bench: Bench
    db_url: str
    pg_pid: int | None = None

    def start(self, replicas: int) -> Deployment:
        for _ in range(replicas):
            self.bench.start_server(self.db_url)
        return self

    @property
    def ports(self) -> list[int]:
        return [int(s.url.rsplit(":", 1)[1]) for s in self.bench.servers]

    @property
    def label(self) -> str:
        return f"{self.backend} x{len(self.bench.servers)}"

    def load(self) -> Load:
        return Load([s.pid for s in self.bench.servers], self.pg_pid)


@contextlib.contextmanager
def deployment(backend: str, replicas: int, pg_url: str, pg_pid: int | None, keep: bool):
    """A fresh database on ``backend`` and ``replicas`` servers on it, for one ``with``."""
    with contextlib.ExitStack() as stack:  # servers stop before their database is dropped
        db_url = ""
        if backend == "postgres":
            db_url = stack.enter_context(fresh_database(Path("."), server_url=pg_url))
        bench = stack.enter_context(Bench(keep))
        db_url = db_url or f"sqlite:///{bench.home}/edgefleet.db"
        yield Deployment(backend, bench, db_url, pg_pid).start(replicas)


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
        self.samples: list[tuple[str, Outcome]] = []
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
        out = await closed_loop(self.pools, lambda i: PING, 32, self.seconds, Load([self.proc.pid]))
        self.samples.append((label, out))
        progress(f"ceiling ({label}): {out.rate:.0f} req/s")
        return out.rate


# --- phase: heartbeats per second -----------------------------------------------------------

STEP_FRACTIONS = (0.25, 0.5, 0.7, 0.85, 1.0, 1.15)


@dataclass
class HeartbeatResult:
    probe: Outcome
    steps: list[Outcome]
    best: Outcome | None


def hb_passes(step: Outcome, bound: float) -> bool:
    enough = step.answered >= 0.95 * step.offered * step.seconds
    return enough and step.lat.p99 < bound and step.failed == 0


async def measure_heartbeats(
    dep: Deployment, args: argparse.Namespace, workers: list[SimWorker] | None = None
) -> HeartbeatResult:
    """Closed-loop probe for the saturation rate, then open-loop steps below and around it.
    ``workers``: registered simulated workers (default: new ones signing with the secret)."""
    pools = Pools(dep.ports)
    try:
        if workers is None:
            workers = sim_workers(dep.bench.secret, "hb", args.hb_workers)
            await register_all(pools, workers, "hb", 2, 10.0)

        def make(i: int) -> Request:
            return workers[i % len(workers)].heartbeat()

        probe = await closed_loop(pools, make, 32, args.hb_seconds, dep.load())
        progress(f"{dep.label} heartbeat probe: {probe.rate:.0f}/s p99 {fmt_ms(probe.lat.p99)}")
        steps: list[Outcome] = []
        best, missed_once = None, False
        fractions = list(STEP_FRACTIONS)
        while fractions:
            await asyncio.sleep(0.5)
            step = await open_loop(
                pools, make, probe.rate * fractions[0], args.hb_seconds, dep.load()
            )
            steps.append(step)
            passed = hb_passes(step, args.hb_p99)
            verdict = "ok" if passed else "over"
            progress(
                f"  offered {step.offered:.0f}/s: {step.rate:.0f}/s "
                f"p99 {fmt_ms(step.lat.p99)} failed {step.failed} {verdict}"
            )
            if passed:
                best = step
                fractions.pop(0)
            elif missed_once:  # the second miss in a row is the server, not a hiccup
                break
            missed_once = not passed
        return HeartbeatResult(probe, steps, best)
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
    oldest: float
    load: dict[str, float]
    expected: float  # N / interval beats/s: what a fleet that keeps up delivers
    rate: float  # beats answered per second of the window

    def keeps_up(self, args: argparse.Namespace) -> bool:
        return (
            self.rate >= 0.95 * self.expected
            and summarize(self.latencies).p99 <= args.fleet_p99
            and self.failed <= 0.001 * max(1, self.scheduled)
            and self.stale == 0
        )


async def beat_forever(worker: SimWorker, port: int, t0: float, until: float, tally: dict):
    """Heartbeat every interval +-10 % from a random phase over one kept connection."""
    interval = tally["interval"]
    due = t0 + random.uniform(0, interval)
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
        due = max(due + interval * random.uniform(0.9, 1.1), time.monotonic())
    conn.close()


def staleness(db_url: str, prefix: str, older_than: float) -> tuple[int, float]:
    """(workers whose last heartbeat is older than ``older_than`` s, the oldest age in s)."""
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
    ages = [(now - beat).total_seconds() if beat else math.inf for beat in beats]
    return sum(1 for a in ages if a > older_than), max(ages, default=math.inf)


async def measure_fleet(dep: Deployment, args: argparse.Namespace) -> list[FleetStep]:
    """Step the fleet size up until a step falls behind (or all sizes pass)."""
    workers: list[SimWorker] = []
    steps: list[FleetStep] = []
    for size in args.fleet_size_list:
        pools = Pools(dep.ports)
        new = sim_workers(dep.bench.secret, "fl", size, start=len(workers))
        await register_all(pools, new, "fleet", 2, args.fleet_interval)
        pools.close()
        workers += new
        tally: dict = {
            "scheduled": 0,
            "failed": 0,
            "latencies": [],
            "interval": args.fleet_interval,
        }
        ports, load = dep.ports, dep.load().start()
        t0 = time.monotonic()
        until = t0 + args.fleet_window
        await asyncio.gather(
            *(
                beat_forever(w, ports[i % len(ports)], t0, until, tally)
                for i, w in enumerate(workers)
            )
        )
        used = load.stop()
        stale, oldest = await asyncio.to_thread(
            staleness, dep.db_url, "fl", 1.5 * args.fleet_interval
        )
        step = FleetStep(
            len(workers),
            tally["scheduled"],
            tally["failed"],
            tally["latencies"],
            stale,
            oldest,
            used,
            len(workers) / args.fleet_interval,
            len(tally["latencies"]) / args.fleet_window,
        )
        steps.append(step)
        p99 = fmt_ms(summarize(step.latencies).p99)
        progress(
            f"{dep.label} fleet {size}: {step.rate:.0f}/{step.expected:.0f} beats/s "
            f"p99 {p99} stale {stale} oldest {oldest:.1f} s"
        )
        if not step.keeps_up(args):
            break
    return steps


# --- phase: no-op job throughput ------------------------------------------------------------


@dataclass
class JobRun:
    """One job measurement; times are ``time.monotonic()``."""

    jobs: int
    first_submit: float = math.nan
    last_submit: float = math.nan
    workers_start: float = math.nan
    last_done: float = math.nan
    failed: int = 0
    fetches: int = 0
    repeated: int = 0
    done_ids: set[int] = field(default_factory=set)
    load: dict[str, float] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def per_second(self, start: float, end: float) -> float:
        return self.jobs / (end - start) if end > start else math.nan

    @property
    def submit_rate(self) -> float:
        return self.per_second(self.first_submit, self.last_submit)

    @property
    def end_to_end(self) -> float:
        return self.per_second(self.first_submit, self.last_done)

    @property
    def drain(self) -> float:
        return self.per_second(self.workers_start, self.last_done)


async def job_worker(worker: SimWorker, conn: Conn, slots: int, run: JobRun) -> None:
    """Fetch with every slot free, report each claimed job a success at once, long-poll when
    nothing came (as the agent does). A lost fetch answer is asked again with the same seq."""
    again = False
    while not run.done.is_set():
        try:
            status, answer = await conn.request(worker.fetch(slots, again), timeout=60)
        except HttpError:
            status, answer = 0, b""
        run.fetches += 1
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
                status, answer = await conn.request(worker.watch(slots, 2.0), timeout=30)
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
        elif job["id"] in run.done_ids:  # a repeated report (answer lost, sent again)
            run.repeated += 1
        else:
            run.done_ids.add(job["id"])
    run.last_done = time.monotonic()
    if len(run.done_ids) >= run.jobs:
        run.done.set()


async def submit_jobs(pools: Pools, secret: str, run: JobRun, args: argparse.Namespace) -> None:
    job = {"command": ["true"], "queue": "noop"}
    sizes = [min(args.batch, run.jobs - start) for start in range(0, run.jobs, args.batch)]
    path, headers = f"{API_PREFIX}/jobs/batch", admin_headers(secret)
    run.first_submit = time.monotonic()
    await for_all(
        pools, [("POST", path, headers, {"jobs": [job] * n}) for n in sizes], args.submitters
    )
    run.last_submit = time.monotonic()


async def work_off(dep: Deployment, workers: list[SimWorker], run: JobRun, args) -> None:
    """Run the job workers until ``run`` is complete (or its time is up), then stop them."""
    ports = dep.ports
    conns = [Conn(ports[i % len(ports)]) for i in range(len(workers))]
    run.workers_start = time.monotonic()
    tasks = [
        asyncio.create_task(job_worker(w, c, args.job_slots, run))
        for w, c in zip(workers, conns, strict=True)
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


async def measure_jobs(dep: Deployment, args: argparse.Namespace) -> tuple[JobRun, JobRun]:
    """(a) submit while the workers run; (b) submit a backlog, then let the workers drain it."""
    workers = sim_workers(dep.bench.secret, "jw", args.job_workers)
    pools = Pools(dep.ports)
    try:
        await register_all(pools, workers, "noop", args.job_slots)
        e2e, backlog = JobRun(args.jobs), JobRun(args.jobs)
        load = dep.load().start()
        await asyncio.gather(
            work_off(dep, workers, e2e, args), submit_jobs(pools, dep.bench.secret, e2e, args)
        )
        e2e.load = load.stop()
        progress(f"{dep.label} jobs end to end: {e2e.end_to_end:.0f}/s")
        await submit_jobs(pools, dep.bench.secret, backlog, args)
        load = dep.load().start()
        await work_off(dep, workers, backlog, args)
        backlog.load = load.stop()
        progress(
            f"{dep.label} jobs submit {backlog.submit_rate:.0f}/s, drain {backlog.drain:.0f}/s"
        )
        return e2e, backlog
    finally:
        pools.close()


# --- one configuration and the report -------------------------------------------------------


@dataclass
class ConfigResult:
    label: str
    heartbeat: HeartbeatResult | None = None
    fleet: list[FleetStep] = field(default_factory=list)
    jobs: tuple[JobRun, JobRun] | None = None
    errors: int = 0
    ceilings: dict[str, float] = field(default_factory=dict)  # phase -> req/s right before


async def run_config(dep: Deployment, args: argparse.Namespace, ceiling: Ceiling | None):
    result = ConfigResult(dep.label)
    progress(f"== {dep.label}: servers on ports {dep.ports}")
    measures = {"heartbeat": measure_heartbeats, "fleet": measure_fleet, "jobs": measure_jobs}
    for phase, measure in measures.items():
        if phase in args.skip:
            continue
        if ceiling is not None:
            result.ceilings[phase] = await ceiling.measure(f"{dep.label} {phase}")
        setattr(result, phase, await measure(dep, args))
    errors = [line for server in dep.bench.servers for line in server_errors(server)]
    for line in errors[:5]:
        progress(f"  server error: {line}")
    result.errors = len(errors)
    return result


def frac(value: float | None, ceiling: float | None) -> str:
    ok = value is not None and ceiling and math.isfinite(value) and math.isfinite(ceiling)
    return f"{value / ceiling:.3f}" if ok else "-"


def print_report(results: list[ConfigResult], ceiling: Ceiling | None, args) -> None:
    print(f"\nmeasured scale; code: {git_state()}; quick={args.quick}")
    if ceiling is not None:
        rows = [
            [when, fmt_rate(c.rate), fmt_ms(c.lat.p99), *Load.row(c.load)]
            for when, c in ceiling.samples
        ]
        print_table(
            "ceiling: bare FastAPI async endpoint, 32 callers, before each phase",
            ["before", "req/s", "p99", *Load.HEADERS],
            rows,
        )
    hb_rows, fleet_rows, job_rows, summary = [], [], [], []
    for res in results:
        hb = res.heartbeat
        for name, out in [("probe x32", hb.probe), *[("open", s) for s in hb.steps]] if hb else []:
            ok = "-" if name != "open" else "ok" if hb_passes(out, args.hb_p99) else "over"
            hb_rows.append(
                [
                    res.label,
                    f"{name} {out.offered:.0f}/s",
                    fmt_rate(out.rate),
                    fmt_ms(out.lat.p50),
                    fmt_ms(out.lat.p99),
                    out.failed,
                    *Load.row(out.load),
                    ok,
                ]
            )
        for step in res.fleet:
            lat = summarize(step.latencies)
            fleet_rows.append(
                [
                    res.label,
                    step.size,
                    f"{step.rate:.0f}/{step.expected:.0f}/s",
                    fmt_ms(lat.p50),
                    fmt_ms(lat.p99),
                    step.failed,
                    f"{step.stale} ({step.oldest:.1f} s)",
                    *Load.row(step.load),
                    "ok" if step.keeps_up(args) else "BEHIND",
                ]
            )
        for name, run, figure in (
            [
                ("end to end", res.jobs[0], res.jobs[0].end_to_end),
                ("backlog drain", res.jobs[1], res.jobs[1].drain),
            ]
            if res.jobs
            else []
        ):
            job_rows.append(
                [
                    res.label,
                    name,
                    fmt_rate(figure),
                    fmt_rate(run.submit_rate),
                    f"{len(run.done_ids)}/{run.jobs}",
                    f"{run.fetches / max(1, len(run.done_ids)):.2f}",
                    f"{run.failed}/{run.repeated}",
                    *Load.row(run.load),
                ]
            )
        summary.append(summary_row(res, args))
    if hb_rows:
        print_table(
            "heartbeat steps (CPU in cores)",
            ["config", "load", "answered", "p50", "p99", "failed", *Load.HEADERS, ""],
            hb_rows,
        )
    if fleet_rows:
        print_table(
            f"fleet at a {args.fleet_interval:g} s heartbeat, {args.fleet_window:g} s windows; "
            f"keeps up = >= 95% of N/interval beats/s, p99 <= {fmt_ms(args.fleet_p99)}, "
            f"<= 0.1% failed, no last_heartbeat older than 1.5 intervals",
            ["config", "N", "beats", "p50", "p99", "failed", "stale (oldest)", *Load.HEADERS, ""],
            fleet_rows,
        )
    if job_rows:
        print_table(
            "no-op jobs",
            [
                "config",
                "run",
                "jobs/s",
                "submit/s",
                "done",
                "fetches/job",
                "failed/repeated",
                *Load.HEADERS,
            ],
            job_rows,
        )
    print_table(
        "SUMMARY (fraction of the ceiling measured right before the phase; N+ = the largest "
        "fleet tried kept up)",
        [
            "config",
            f"hb/s p99<{fmt_ms(args.hb_p99)}",
            f"fleet @{args.fleet_interval:g}s",
            "jobs e2e",
            "dispatch+done",
            "srv errors",
        ],
        summary,
    )


def summary_row(res: ConfigResult, args: argparse.Namespace) -> list[object]:
    ceil = res.ceilings.get
    hb = res.heartbeat.best.rate if res.heartbeat and res.heartbeat.best else None
    kept = [s for s in res.fleet if s.keeps_up(args)]
    fleet = kept[-1] if kept else None
    fleet_text = "-" if fleet is None else f"{fleet.size}{'+' if fleet is res.fleet[-1] else ''}"
    e2e, drain = (res.jobs[0].end_to_end, res.jobs[1].drain) if res.jobs else (None, None)
    return [
        res.label,
        f"{fmt_rate(hb)} ({frac(hb, ceil('heartbeat'))})",
        f"{fleet_text} ({frac(fleet and fleet.expected, ceil('fleet'))})",
        f"{fmt_rate(e2e)} ({frac(e2e, ceil('jobs'))})",
        f"{fmt_rate(drain)} ({frac(drain, ceil('jobs'))})",
        res.errors,
    ]


async def amain(args: argparse.Namespace) -> None:
    random.seed(1)
    configs = [
        (b, r) for b in args.backend_list for r in args.replica_list if r == 1 or b == "postgres"
    ]
    results: list[ConfigResult] = []
    with contextlib.ExitStack() as stack:
        pg_url, pg_pid = args.pg_url or "", None
        if not pg_url and any(b == "postgres" for b, _ in configs):
            cluster = stack.enter_context(PgCluster(keep=args.keep))
            pg_url, pg_pid = cluster.url, cluster.postmaster_pid()
            progress(f"PostgreSQL cluster on port {cluster.port} ({cluster.dir})")
        ceiling = None
        if "ceiling" not in args.skip:
            ceiling = Ceiling(stack.enter_context(Bench(args.keep)), args.ceiling_seconds)
        for backend, replicas in configs:
            await asyncio.to_thread(wait_for_quiet_host, args.quiet_host, 180.0)
            with deployment(backend, replicas, pg_url, pg_pid, args.keep) as dep:
                results.append(await run_config(dep, args, ceiling))
        if ceiling is not None:
            ceiling.pools.close()
    print_report(results, ceiling, args)


if __name__ == "__main__":
    install_signal_exit()
    run_async(amain(parse_args()))
