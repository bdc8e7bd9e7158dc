"""Measured scale: heartbeats/s, fleet size and no-op job throughput per backend and replica count.

For each configuration (SQLite or PostgreSQL; one or two ``edgefleet server`` replicas, two
only on PostgreSQL, both on one database) this starts real server processes on a fresh
database and drives them with simulated workers (asyncio, in this process, over the minimal
HTTP/1.1 client of ``_common.Conn``; requests are spread round-robin over the replicas):

1. ``heartbeat``: the highest rate of heartbeats one deployment sustains with p99 latency under
   ``--hb-p99`` (100 ms). A closed-loop probe finds the saturation rate X, then open-loop steps
   offer fractions of X (latency counted from each request's scheduled time, so a stalled
   server cannot hide queueing); a step passes if p99 < 100 ms and >= 95 % of the offered rate
   was answered. The figure is the highest passing step's achieved rate.
2. ``fleet``: N workers (stepped, default 1000, 2500, 5000, 10000) each heartbeat every 10 s
   (+-10 % jitter, random phase; each over one connection kept open between beats, as the
   worker's client keeps it for 60 s and the server for ``EDGEFLEET_KEEP_ALIVE`` 75 s;
   ``--fleet-connections new``: a new TCP connection per beat; a beat answered late makes the
   next one due at once, never two at a time). A step *falls behind* if it answered fewer than 95 %
   of N/10 beats/s over the window, p99 latency (from the beat's due time) exceeds ``--fleet-p99``
   (1 s, a tenth of the interval), more than 0.1 % failed, or any worker's ``last_heartbeat``
   in the database is older than 1.5 intervals at the end of the window. The figure is the
   largest N that kept up.
3. ``jobs``: no-op jobs. ``--job-workers`` simulated workers (``--job-slots`` free slots each)
   fetch, report every claimed job ``success`` at once (no process is run; all of a fetch in
   one POST /workers/{name}/results, as a worker's outbox sends results that are ready
   together; ``--report each``: one POST /jobs/{id}/result per job) and long-poll ``watch``
   when nothing is queued. (a) end to end: the jobs are submitted (POST
   /api/v1/jobs/batch, ``--batch`` jobs per request, ``--submitters`` in parallel; ``--batch
   1``: one POST /api/v1/jobs per job) while the workers
   run; jobs/s from the first submit to the last completion. (b) the same number is submitted
   with no worker running (the submission rate alone), then the workers drain the backlog:
   dispatch+complete jobs/s.
4. the ceiling: a bare FastAPI app (one ``async def`` endpoint) under uvicorn in its own
   process, closed loop with the same client, measured right before each phase; every figure
   is also printed as a fraction of that phase's ceiling, so results survive a noisy machine.
   ``health`` is the server's own GET /api/v1/health (sync, no database) per configuration.

CPU (as cores: 1.0 = one core busy) is reported for the server replicas, this process, the
PostgreSQL cluster (when this script started it) and everything else ("others"); whichever
is near its limit is what bounded the figure.

    .venv/bin/python bench/scale.py                     # full: sqlite and postgres, 1 and 2
    .venv/bin/python bench/scale.py --quick             # a smoke run, about 3 minutes
    .venv/bin/python bench/scale.py --backends postgres --replicas 2 --skip fleet
    .venv/bin/python bench/scale.py --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/scale.py --py-spy /tmp/prof   # profile the hot paths (1 replica)

py-spy pauses the server for every sample: the figures of a ``--py-spy`` run are lower than
without it and only its profiles (``bench/profile_summary.py FILE``) are worth reading.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    LOOPBACK,
    BenchEnv,
    Conn,
    CpuMeter,
    HttpError,
    MachineMeter,
    ServerProcess,
    Summary,
    _die_with_parent,
    _terminate_group,
    fmt_ms,
    free_port,
    git_state,
    install_signal_exit,
    new_env,
    print_table,
    raise_nofile,
    run_async,
    summarize,
    wait_for_quiet_host,
)

from edgefleet.auth import Identity, TokenAuth, mint_token  # noqa: E402
from edgefleet.contract import API_PREFIX  # noqa: E402
from edgefleet.worker.client import KEEPALIVE_SECONDS  # noqa: E402

PHASES = ("ceiling", "heartbeat", "fleet", "jobs")
EDGE = f"{API_PREFIX}/edge"
Request = tuple[str, str, dict[str, str], object]


# --- options -------------------------------------------------------------------------------


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
    add(
        "--fleet-connections",
        choices=("keep", "new"),
        default="keep",
        help="fleet workers keep one connection between beats (as the worker's client does), "
        "or open a new one per beat",
    )
    add("--fleet-p99", type=float, default=1.0, help="p99 bound of the fleet phase (s)")
    add("--jobs", type=int, help="no-op jobs per job measurement")
    add("--job-workers", type=int, default=50, help="simulated workers taking jobs")
    add("--job-slots", type=int, default=8, help="free slots each job worker fetches with")
    add("--submitters", type=int, default=32, help="parallel job submissions")
    add(
        "--batch",
        type=int,
        default=50,
        help="jobs per submit request (POST /jobs/batch); 1: one POST /jobs per job",
    )
    add(
        "--report",
        choices=("batch", "each"),
        default="batch",
        help="job workers report the jobs of a fetch in one request, or one request each",
    )
    add("--ceiling-seconds", type=float, help="seconds of each ceiling measurement")
    add("--py-spy", metavar="DIR", help="record raw py-spy profiles of the 1-replica servers")
    add(
        "--quiet-host",
        type=float,
        metavar="CORES",
        help="before each configuration wait (up to 3 min) until others use fewer cores",
    )
    add("--keep", action="store_true", help="keep temporary homes and the PostgreSQL cluster")
    add("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    args.backend_list = _csv(args.backends)
    args.replica_list = [int(r) for r in _csv(args.replicas)]
    args.skip = set(_csv(args.skip))
    if bad := set(args.backend_list) - {"sqlite", "postgres"}:
        parser.error(f"unknown backends {sorted(bad)}")
    if bad := args.skip - set(PHASES):
        parser.error(f"unknown phases {sorted(bad)}")
    if any(r not in (1, 2) for r in args.replica_list):
        parser.error("--replicas: 1 and/or 2")
    _defaults(args)
    return args


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _defaults(args: argparse.Namespace) -> None:
    """Fill the sizing options left unset: short for --quick, the issue's goals otherwise."""
    quick = args.quick
    args.hb_workers = args.hb_workers or (200 if quick else 1000)
    args.hb_seconds = args.hb_seconds or (2.0 if quick else 5.0)
    sizes = args.fleet_sizes or ("300,1000" if quick else "1000,2500,5000,10000")
    args.fleet_size_list = [int(n) for n in _csv(sizes)]
    args.fleet_window = args.fleet_window or (13.0 if quick else 30.0)
    args.jobs = args.jobs or (500 if quick else 3000)
    args.ceiling_seconds = args.ceiling_seconds or (2.0 if quick else 5.0)


def configurations(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(backend, replicas) pairs to run; two replicas need a shared server database."""
    return [
        (backend, replicas)
        for backend in args.backend_list
        for replicas in args.replica_list
        if replicas == 1 or backend == "postgres"
    ]


# --- a throwaway PostgreSQL cluster --------------------------------------------------------


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_version_key)
    if not found:
        raise SystemExit("PostgreSQL server binaries not found under /usr/lib/postgresql")
    return found[-1].parent


def _version_key(path: Path) -> tuple[int, ...]:
    version = path.parent.parent.name
    return tuple(int(p) for p in version.split(".") if p.isdigit())


class PgCluster:
    """initdb into a temporary directory and pg_ctl start on a free port (as scripts/test.sh)."""

    def __init__(self, keep: bool = False) -> None:
        self.bin = _pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="edgefleet-scale-pg-"))
        self.keep = keep
        self.port = 0
        self.as_user: list[str] = []

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{LOOPBACK}:{self.port}/postgres"

    def _run(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, timeout=120)

    def start(self) -> PgCluster:
        if os.geteuid() == 0:  # initdb refuses to run as root
            shutil.chown(self.dir, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        data = str(self.dir / "data")
        init = self._run(
            str(self.bin / "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8"
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}{init.stderr}")
        self.port = free_port()
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses={LOOPBACK} -c max_connections=400"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        started = self._run(
            str(self.bin / "pg_ctl"), "-D", data, "-l", str(self.dir / "server.log"), "-w",
            "-t", "60", "-o", options, "start",
        )  # fmt: skip
        if started.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed:\n{started.stdout}{started.stderr}")
        return self

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
        return None

    def stop(self) -> None:
        if self.port and (self.dir / "data" / "postmaster.pid").exists():
            pg_ctl = str(self.bin / "pg_ctl")
            self._run(pg_ctl, "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def create_database(admin_url: str, name: str) -> str:
    """A fresh database next to ``admin_url``'s; returns its SQLAlchemy URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


def children_cpu(parent: int | None) -> float:
    """CPU seconds of ``parent`` and all its children, live or ended (the cluster's backends).

    A live child counts by its own time; an ended one is in the parent's cutime/cstime once
    reaped, so the sum never goes back when backends come and go.
    """
    if parent is None:
        return float("nan")
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            if int(entry.name) == parent:  # itself, plus its reaped children
                total += sum(int(v) for v in stat[11:15]) / tick
            elif int(stat[1]) == parent:
                total += (int(stat[11]) + int(stat[12])) / tick
    return total


# --- deployments and load meters ------------------------------------------------------------


@dataclass
class Deployment:
    """One configuration: a fresh database, 1..2 server replicas on it, one shared secret."""

    backend: str
    env: BenchEnv
    db_url: str
    servers: list[ServerProcess] = field(default_factory=list)
    pg_pid: int | None = None

    @property
    def ports(self) -> list[int]:
        return [server.env.port for server in self.servers]

    @property
    def label(self) -> str:
        return f"{self.backend} x{len(self.servers)}"

    def start(self, replicas: int) -> Deployment:
        for index in range(replicas):
            env = self.env if index == 0 else dataclasses.replace(self.env, port=free_port())
            server = ServerProcess(env, extra_env={"EDGEFLEET_DB_URL": self.db_url})
            server.log_path = self.env.home / f"server-{index}.log"
            self.servers.append(server)
            server.start()
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.env.cleanup()

    def errors(self) -> int:
        return sum(len(server.error_lines()) for server in self.servers)


class Load:
    """CPU of the servers, this process, the database cluster and the rest, in cores."""

    def __init__(self, deployment: Deployment | None, server_pids: list[int] | None = None):
        if server_pids is None:
            server_pids = [s.pid for s in deployment.servers] if deployment else []
        pids = server_pids
        self.servers = [CpuMeter(pid) for pid in pids]
        self.client = CpuMeter(os.getpid())
        self.machine = MachineMeter()
        self.pg_pid = deployment.pg_pid if deployment else None
        self._pg0 = 0.0
        self._t0 = 0.0
        self.result: dict[str, float] = {}

    def start(self) -> Load:
        for meter in [*self.servers, self.client]:
            meter.start()
        self.machine.start()
        self._pg0 = children_cpu(self.pg_pid)
        self._t0 = time.monotonic()
        return self

    def stop(self) -> dict[str, float]:
        srv = sum(meter.stop() for meter in self.servers)
        cli = self.client.stop()
        elapsed = time.monotonic() - self._t0
        pg = (children_cpu(self.pg_pid) - self._pg0) / elapsed if self.pg_pid else 0.0
        machine = self.machine.stop()
        others = machine - srv - cli - (pg if math.isfinite(pg) else 0.0)
        self.result = {"srv": srv, "cli": cli, "pg": pg, "others": max(0.0, others)}
        return self.result


def fmt_load(load: dict[str, float]) -> list[str]:
    def cores(value: float) -> str:
        return f"{value:.2f}" if math.isfinite(value) else "-"

    return [cores(load.get(k, float("nan"))) for k in ("srv", "cli", "pg", "others")]


LOAD_HEADERS = ["srv", "bench", "pg", "others"]


# --- HTTP load shapes ---------------------------------------------------------------------


@dataclass
class Outcome:
    """Answered requests of one measurement: rate, latency and failures."""

    offered: float
    answered: int
    failed: int
    seconds: float
    lat: Summary
    load: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else float("nan")


class Pools:
    """Keep-alive connections per replica port, taken and given back by concurrent requests."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.free: dict[int, list[Conn]] = {port: [] for port in ports}

    def take(self, index: int) -> Conn:
        port = self.ports[index % len(self.ports)]
        free = self.free[port]
        return free.pop() if free else Conn(LOOPBACK, port)

    def give(self, conn: Conn) -> None:
        self.free[conn.port].append(conn)

    def close(self) -> None:
        for conns in self.free.values():
            for conn in conns:
                conn.close()
            conns.clear()

    async def send(self, index: int, request: Request, ok: int = 300) -> tuple[bool, bytes]:
        """One request over a pooled connection of replica ``index % replicas``."""
        method, path, headers, body = request
        conn = self.take(index)
        try:
            status, answer = await conn.request(method, path, headers, body, timeout=30)
        except HttpError:
            conn.close()
            return False, b""
        self.give(conn)
        return status < ok, answer


async def closed_loop(
    pools: Pools, make: Callable[[int], Request], callers: int, seconds: float, load: Load
) -> Outcome:
    """``callers`` loops, each sending the next request as soon as the last is answered."""
    latencies: list[float] = []
    failed = 0
    counter = 0
    stop = time.monotonic() + seconds

    async def loop(caller: int) -> None:
        nonlocal failed, counter
        while time.monotonic() < stop:
            counter += 1
            t0 = time.monotonic()
            ok, _ = await pools.send(caller, make(counter))
            if ok:
                latencies.append(time.monotonic() - t0)
            else:
                failed += 1

    load.start()
    t0 = time.monotonic()
    await asyncio.gather(*(loop(i) for i in range(callers)))
    elapsed = time.monotonic() - t0
    used = load.stop()
    return Outcome(float("nan"), len(latencies), failed, elapsed, summarize(latencies), used)


async def open_loop(
    pools: Pools, make: Callable[[int], Request], rate: float, seconds: float, load: Load
) -> Outcome:
    """Requests scheduled at ``rate``/s whatever the answers do; latency from the schedule.

    Requests still unanswered 2 s after the window count as failed: the server fell behind.
    """
    latencies: list[float] = []
    failed = 0
    tasks: set[asyncio.Task] = set()

    async def one(index: int, due: float) -> None:
        nonlocal failed
        ok, _ = await pools.send(index, make(index))
        if ok:
            latencies.append(time.monotonic() - due)
        else:
            failed += 1

    load.start()
    t0 = time.monotonic()
    sent = 0
    while (now := time.monotonic()) < t0 + seconds:
        target = int((now - t0) * rate)
        while sent < target:
            task = asyncio.create_task(one(sent, t0 + sent / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(0.002)
    if tasks:
        _, late = await asyncio.wait(set(tasks), timeout=2.0)
        for task in late:
            task.cancel()
        failed += len(late)
    elapsed = time.monotonic() - t0
    used = load.stop()
    return Outcome(rate, len(latencies), failed, elapsed, summarize(latencies), used)


# --- simulated workers: identities and requests ---------------------------------------------


@dataclass
class SimWorker:
    """A simulated worker's identity and protocol state."""

    name: str
    #: Signs like a real worker: one token per ``TOKEN_REUSE_SECONDS``, so the server's cache
    #: of verified tokens sees what a real fleet gives it.
    signer: TokenAuth
    instance: str = field(default_factory=lambda: uuid.uuid4().hex)
    seq: int = 0
    version: int = 1

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.signer.token()}"}

    def register(self, queue: str, concurrency: int, interval: float) -> Request:
        body = {
            "instance_id": self.instance,
            "concurrency": concurrency,
            "queues": [queue],
            "heartbeat_interval": interval,
        }
        return "POST", f"{EDGE}/workers/{self.name}/register", self.headers, body

    def heartbeat(self) -> Request:
        body = {
            "instance_id": self.instance,
            "state": "idle",
            "applied_version": self.version,
            "applied_concurrency": 2,
        }
        return "POST", f"{EDGE}/workers/{self.name}/heartbeat", self.headers, body

    def fetch(self, free_slots: int, again: bool = False) -> Request:
        """The next fetch; ``again`` repeats the last ``seq`` (its answer was lost)."""
        self.seq += not again
        body = {"instance_id": self.instance, "free_slots": free_slots, "seq": self.seq}
        return "POST", f"{EDGE}/workers/{self.name}/fetch", self.headers, body

    def watch(self, free_slots: int, timeout: float) -> Request:
        query = urlencode(
            {
                "instance_id": self.instance,
                "version": self.version,
                "free_slots": free_slots,
                "timeout": timeout,
            }
        )
        return "GET", f"{EDGE}/workers/{self.name}/watch?{query}", self.headers, None

    def result(self, job: dict) -> Request:
        body = {"instance_id": self.instance, "attempt": job["attempt"], "state": "success"}
        body["exit_code"] = 0
        return "POST", f"{EDGE}/jobs/{job['id']}/result", self.headers, body

    def results(self, jobs: list[dict]) -> Request:
        results = [
            {"job_id": job["id"], "instance_id": self.instance, "attempt": job["attempt"]}
            | {"state": "success", "exit_code": 0}
            for job in jobs
        ]
        return "POST", f"{EDGE}/workers/{self.name}/results", self.headers, {"results": results}


def sim_workers(secret: str, prefix: str, count: int, start: int = 0) -> list[SimWorker]:
    def signer(name: str) -> TokenAuth:
        return TokenAuth(secret, Identity(subject=name, role="worker"))

    names = [f"{prefix}{i:05d}" for i in range(start, count)]
    return [SimWorker(name, signer(name)) for name in names]


async def for_all(
    pools: Pools, requests: list[Request], parallel: int = 32
) -> tuple[int, list[bytes]]:
    """Send every request, ``parallel`` at a time; (failures, answers in order)."""
    answers: list[bytes] = [b""] * len(requests)
    failures = 0
    next_index = 0

    async def loop(caller: int) -> None:
        nonlocal failures, next_index
        while next_index < len(requests):
            index = next_index
            next_index += 1
            ok, answers[index] = await pools.send(index, requests[index])
            failures += not ok

    await asyncio.gather(*(loop(i) for i in range(parallel)))
    return failures, answers


async def register_all(
    pools: Pools, workers: list[SimWorker], queue: str, slots: int, interval: float
) -> None:
    failures, _ = await for_all(pools, [w.register(queue, slots, interval) for w in workers])
    if failures:
        raise RuntimeError(f"{failures} of {len(workers)} registrations failed")


# --- phase: ceiling -------------------------------------------------------------------------

BARE_APP = """
import sys
import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/ping")
async def ping():
    return {"ok": True}


uvicorn.run(app, host=sys.argv[1], port=int(sys.argv[2]), log_level="warning")
"""


class Ceiling:
    """A trivial async FastAPI endpoint in its own uvicorn process: this host's HTTP ceiling.

    It stays up for the whole run and is measured right before each phase, so each figure is
    divided by the ceiling of the moment it was taken (the host's load drifts).
    """

    def __init__(self, seconds: float, enabled: bool) -> None:
        self.seconds = seconds
        self.enabled = enabled
        self.samples: list[tuple[str, Outcome]] = []
        self.proc: subprocess.Popen | None = None
        self.pools: Pools | None = None

    async def start(self) -> Ceiling:
        if not self.enabled:
            return self
        port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", BARE_APP, LOOPBACK, str(port)],
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.pools = Pools([port])
        await _wait_answering(self.pools, PING, self.proc)
        return self

    async def measure(self, label: str) -> float:
        """Requests/s of the bare endpoint now (NaN when disabled)."""
        if self.proc is None or self.pools is None:
            return float("nan")
        load = Load(None, [self.proc.pid])
        out = await closed_loop(self.pools, lambda i: PING, 32, self.seconds, load)
        self.samples.append((label, out))
        _progress(f"ceiling ({label}): {out.rate:.0f} req/s")
        return out.rate

    def stop(self) -> None:
        if self.pools is not None:
            self.pools.close()
        if self.proc is not None:
            _terminate_group(self.proc, 5)


PING: Request = ("GET", "/ping", {}, None)


async def _wait_answering(pools: Pools, request: Request, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the bare FastAPI app exited")
        ok, _ = await pools.send(0, request)
        if ok:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the bare FastAPI app did not answer")


async def measure_health(dep: Deployment, seconds: float) -> Outcome:
    """GET /api/v1/health (sync endpoint, no DB) on the deployment's replicas."""
    pools = Pools(dep.ports)
    try:
        request = ("GET", f"{API_PREFIX}/health", {}, None)
        return await closed_loop(pools, lambda i: request, 32, seconds, Load(dep))
    finally:
        pools.close()


# --- phase: heartbeats per second -----------------------------------------------------------

STEP_FRACTIONS = (0.25, 0.5, 0.7, 0.85, 1.0, 1.15)


@dataclass
class HeartbeatResult:
    probe: Outcome
    steps: list[Outcome]
    best: Outcome | None


def hb_passes(step: Outcome, bound: float) -> bool:
    answered_enough = step.answered >= 0.95 * step.offered * step.seconds
    return answered_enough and step.lat.p99 < bound and step.failed == 0


async def measure_heartbeats(
    dep: Deployment,
    args: argparse.Namespace,
    profile: Callable[[str, float], None],
    workers: list[SimWorker] | None = None,
) -> HeartbeatResult:
    """Closed-loop probe for the saturation rate, then open-loop steps below and around it.
    ``workers``: registered simulated workers to beat as (default: new ones, signing with
    the shared secret)."""
    pools = Pools(dep.ports)
    try:
        if workers is None:
            workers = sim_workers(dep.env.secret, "hb", args.hb_workers)
            await register_all(pools, workers, "hb", 2, 10.0)

        def make(i: int) -> Request:
            return workers[i % len(workers)].heartbeat()

        profile("heartbeat", args.hb_seconds)
        probe = await closed_loop(pools, make, 32, args.hb_seconds, Load(dep))
        _progress(f"{dep.label} heartbeat probe: {probe.rate:.0f}/s p99 {fmt_ms(probe.lat.p99)}")
        steps: list[Outcome] = []
        best = None
        retried = False
        fractions = list(STEP_FRACTIONS)
        while fractions:
            await asyncio.sleep(0.5)
            rate = probe.rate * fractions[0]
            step = await open_loop(pools, make, rate, args.hb_seconds, Load(dep))
            steps.append(step)
            passed = hb_passes(step, args.hb_p99)
            _progress(
                f"  offered {step.offered:.0f}/s: {step.rate:.0f}/s p99 {fmt_ms(step.lat.p99)}"
                f" failed {step.failed} {'ok' if passed else 'over'}"
            )
            if passed:
                best = step
                fractions.pop(0)
            elif retried:  # the second miss in a row is the server, not a passing hiccup
                break
            retried = not passed
        return HeartbeatResult(probe, steps, best)
    finally:
        pools.close()


# --- phase: fleet at a 10 s heartbeat -------------------------------------------------------


@dataclass
class FleetStep:
    size: int
    scheduled: int
    answered: int
    failed: int
    seconds: float
    lat: Summary
    stale: int
    max_staleness: float
    load: dict[str, float]
    register_rate: float
    interval: float
    window: float

    @property
    def expected_rate(self) -> float:
        """N / interval: what a fleet that keeps up delivers (a slow server cannot lower it)."""
        return self.size / self.interval

    @property
    def rate(self) -> float:
        """Beats due in the window that were answered, per second of the window."""
        return self.answered / self.window


def fleet_keeps_up(step: FleetStep, args: argparse.Namespace) -> bool:
    """The falling-behind criterion printed with the results."""
    return (
        step.rate >= 0.95 * step.expected_rate
        and step.lat.p99 <= args.fleet_p99
        and step.failed <= 0.001 * max(1, step.scheduled)
        and step.stale == 0
    )


def fleet_criterion(args: argparse.Namespace) -> str:
    return (
        f"keeps up = answered >= 95% of N/{args.fleet_interval:g} s beats/s, p99 <= "
        f"{fmt_ms(args.fleet_p99)}, failed <= 0.1%, and no worker's last_heartbeat older than "
        f"{1.5 * args.fleet_interval:g} s at the end of the window"
    )


async def beat_forever(
    worker: SimWorker,
    port: int,
    interval: float,
    t0: float,
    until: float,
    tally: dict,
    keep: bool,
) -> None:
    """Heartbeat every ``interval`` +-10 % from a random phase. ``keep``: over one connection
    kept open between beats, as the worker's client does (``KEEPALIVE_SECONDS``); else a new
    connection per beat."""
    due = t0 + random.uniform(0, interval)
    conn = Conn(LOOPBACK, port, keepalive=KEEPALIVE_SECONDS)
    while due < until:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tally["scheduled"] += 1
        method, path, headers, body = worker.heartbeat()
        try:
            status, _ = await conn.request(method, path, headers, body, timeout=30)
            ok = status < 300
        except HttpError:
            ok = False
        finally:
            if not keep:
                conn.close()
        if ok:
            tally["latencies"].append(time.monotonic() - due)
        else:
            tally["failed"] += 1
        due = max(due + interval * random.uniform(0.9, 1.1), time.monotonic())
    conn.close()


def staleness(db_url: str, prefix: str) -> tuple[int, float, int]:
    """(workers, max seconds since last_heartbeat, how many) for the fleet, read from the DB."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from edgefleet.db.models import Worker

    engine = create_engine(db_url)
    try:
        with Session(engine) as session:
            beats = session.scalars(
                select(Worker.last_heartbeat).where(Worker.hostname.like(f"{prefix}%"))
            ).all()
    finally:
        engine.dispose()
    now = datetime.now(UTC)
    ages = [(now - beat).total_seconds() for beat in beats if beat is not None]
    return len(beats), max(ages, default=float("inf")), len(ages)


async def measure_fleet(dep: Deployment, args: argparse.Namespace) -> list[FleetStep]:
    """Step the fleet size up until a step falls behind (or all sizes pass)."""
    workers: list[SimWorker] = []
    pools = Pools(dep.ports)
    steps: list[FleetStep] = []
    try:
        for size in args.fleet_size_list:
            new = sim_workers(dep.env.secret, "fl", size, start=len(workers))
            t_reg = time.monotonic()
            await register_all(pools, new, "fleet", 2, args.fleet_interval)
            register_rate = len(new) / (time.monotonic() - t_reg)
            workers += new
            pools.close()  # registration connections; beats open their own
            step = await fleet_step(dep, workers, args, register_rate)
            steps.append(step)
            _progress(
                f"{dep.label} fleet {size}: {step.rate:.0f}/{step.expected_rate:.0f} beats/s p99 "
                f"{fmt_ms(step.lat.p99)} stale {step.stale} max age {step.max_staleness:.1f} s"
            )
            if not fleet_keeps_up(step, args):
                break
        return steps
    finally:
        pools.close()


async def fleet_step(
    dep: Deployment, workers: list[SimWorker], args: argparse.Namespace, register_rate: float
) -> FleetStep:
    tally: dict = {"scheduled": 0, "failed": 0, "latencies": []}
    ports = dep.ports
    keep = args.fleet_connections == "keep"
    load = Load(dep).start()
    t0 = time.monotonic()
    until = t0 + args.fleet_window
    await asyncio.gather(
        *(
            beat_forever(w, ports[i % len(ports)], args.fleet_interval, t0, until, tally, keep)
            for i, w in enumerate(workers)
        )
    )
    seconds = time.monotonic() - t0
    used = load.stop()
    count, oldest, _ = await asyncio.to_thread(staleness, dep.db_url, "fl")
    stale_after = 1.5 * args.fleet_interval
    stale = await asyncio.to_thread(count_stale, dep.db_url, "fl", stale_after)
    assert count == len(workers), (count, len(workers))
    return FleetStep(
        size=len(workers),
        scheduled=tally["scheduled"],
        answered=len(tally["latencies"]),
        failed=tally["failed"],
        seconds=seconds,
        lat=summarize(tally["latencies"]),
        stale=stale,
        max_staleness=oldest,
        load=used,
        register_rate=register_rate,
        interval=args.fleet_interval,
        window=args.fleet_window,
    )


def count_stale(db_url: str, prefix: str, older_than: float) -> int:
    from datetime import timedelta

    from sqlalchemy import create_engine, func, or_, select
    from sqlalchemy.orm import Session

    from edgefleet.db.models import Worker

    cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
    engine = create_engine(db_url)
    try:
        with Session(engine) as session:
            query = select(func.count()).where(
                Worker.hostname.like(f"{prefix}%"),
                or_(Worker.last_heartbeat.is_(None), Worker.last_heartbeat < cutoff),
            )
            return session.scalar(query) or 0
    finally:
        engine.dispose()


# --- phase: no-op job throughput ------------------------------------------------------------


@dataclass
class JobRun:
    """One job measurement; times are ``time.monotonic()``."""

    jobs: int
    #: One result per request (POST /jobs/{id}/result) instead of a batch per fetch.
    report_each: bool = False
    first_submit: float = math.nan
    last_submit: float = math.nan
    workers_start: float = math.nan
    last_done: float = math.nan
    completed: int = 0
    submit_failed: int = 0
    report_failed: int = 0
    fetch_failed: int = 0
    fetches: int = 0
    empty_fetches: int = 0
    repeated: int = 0
    done_ids: set[int] = field(default_factory=set)
    watches: int = 0
    load: dict[str, float] = field(default_factory=dict)

    def per_second(self, start: float, end: float) -> float:
        span = end - start
        return self.jobs / span if span > 0 else float("nan")

    @property
    def submit_rate(self) -> float:
        return self.per_second(self.first_submit, self.last_submit)

    @property
    def end_to_end(self) -> float:
        return self.per_second(self.first_submit, self.last_done)

    @property
    def drain(self) -> float:
        return self.per_second(self.workers_start, self.last_done)


@dataclass
class JobResult:
    e2e: JobRun
    backlog: JobRun
    verified: int


async def job_worker(
    worker: SimWorker, conn: Conn, slots: int, run: JobRun, done: asyncio.Event
) -> None:
    """Fetch with every slot free, report each claimed job a success at once, watch if idle."""
    again = False
    while not done.is_set():
        method, path, headers, body = worker.fetch(slots, again)
        try:
            status, answer = await conn.request(method, path, headers, body, timeout=60)
        except HttpError:
            status, answer = 0, b""
        run.fetches += 1
        # A lost answer may have claimed jobs: ask again with the same seq to get them back.
        again = status == 0 or status >= 500
        if status != 200:
            run.fetch_failed += 1
            await asyncio.sleep(0.05)
            continue
        reply = json.loads(answer)
        worker.version = reply["desired"]["version"]
        if not reply["jobs"]:
            run.empty_fetches += 1
            await wait_for_work(worker, conn, slots, run, done)
            continue
        if run.report_each:
            for job in reply["jobs"]:
                await report_success(worker, conn, [job], run, done)
        else:
            await report_success(worker, conn, reply["jobs"], run, done)


async def wait_for_work(
    worker: SimWorker, conn: Conn, slots: int, run: JobRun, done: asyncio.Event
) -> None:
    """Long-poll until the server answers ``work`` (or can't say), as the agent does."""
    while not done.is_set():
        run.watches += 1
        method, path, headers, body = worker.watch(slots, 2.0)
        try:
            status, answer = await conn.request(method, path, headers, body, timeout=30)
        except HttpError:
            return
        if status != 200:
            return
        reply = json.loads(answer)
        worker.version = reply["desired"]["version"]
        if reply.get("reason") in (None, "work"):
            return


async def report_success(
    worker: SimWorker, conn: Conn, jobs: list[dict], run: JobRun, done: asyncio.Event
) -> None:
    """Report ``jobs`` done: one POST /jobs/{id}/result for a single job, else one POST
    /workers/{name}/results for all (as a worker whose jobs end together does)."""
    method, path, headers, body = worker.result(jobs[0]) if len(jobs) == 1 else worker.results(jobs)
    try:
        status, answer = await conn.request(method, path, headers, body, timeout=30)
    except HttpError:
        status = 0
    if status >= 300:
        run.report_failed += len(jobs)
        return
    codes = [204] if status == 204 else [o["status_code"] for o in json.loads(answer)["outcomes"]]
    for job, code in zip(jobs, codes, strict=True):
        if code >= 300:
            run.report_failed += 1
        elif job["id"] in run.done_ids:  # a repeated report (answer lost, sent again)
            run.repeated += 1
        else:
            run.done_ids.add(job["id"])
            run.completed += 1
    run.last_done = time.monotonic()
    if run.completed >= run.jobs:
        done.set()


async def submit_jobs(
    pools: Pools, admin: dict[str, str], run: JobRun, parallel: int, batch: int
) -> None:
    """Submit ``run.jobs`` jobs, ``parallel`` requests at a time: ``batch`` jobs per POST
    /api/v1/jobs/batch, or one POST /api/v1/jobs per job with ``batch`` 1."""
    job = {"command": ["true"], "queue": "noop"}
    if batch <= 1:
        requests: list[Request] = [("POST", f"{API_PREFIX}/jobs", admin, job)] * run.jobs
    else:
        sizes = [min(batch, run.jobs - start) for start in range(0, run.jobs, batch)]
        path = f"{API_PREFIX}/jobs/batch"
        requests = [("POST", path, admin, {"jobs": [job] * size}) for size in sizes]
    run.first_submit = time.monotonic()
    failures, _ = await for_all(pools, requests, parallel)
    run.last_submit = time.monotonic()
    run.submit_failed = failures


async def run_workers(
    dep: Deployment, workers: list[SimWorker], run: JobRun, args: argparse.Namespace
) -> tuple[asyncio.Event, list[asyncio.Task], list[Conn]]:
    done = asyncio.Event()
    ports = dep.ports
    conns = [Conn(LOOPBACK, ports[i % len(ports)]) for i in range(len(workers))]
    run.workers_start = time.monotonic()
    tasks = [
        asyncio.create_task(job_worker(w, c, args.job_slots, run, done))
        for w, c in zip(workers, conns, strict=True)
    ]
    return done, tasks, conns


async def stop_workers(done: asyncio.Event, tasks: list[asyncio.Task], conns: list[Conn]) -> None:
    """Let every worker finish its round (report what it claimed), then stop the stragglers."""
    done.set()
    _, late = await asyncio.wait(tasks, timeout=10.0)
    for task in late:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for conn in conns:
        conn.close()


async def wait_done(done: asyncio.Event, run: JobRun, budget: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), budget)
    if not done.is_set():
        _progress(f"  jobs: only {run.completed}/{run.jobs} completed within {budget:.0f} s")


async def measure_jobs(
    dep: Deployment, args: argparse.Namespace, profile: Callable[[str, float], None]
) -> JobResult:
    """(a) submit while the workers run; (b) submit a backlog, then let the workers drain it."""
    workers = sim_workers(dep.env.secret, "jw", args.job_workers)
    admin = {"Authorization": f"Bearer {admin_token(dep.env.secret)}"}
    pools = Pools(dep.ports)
    budget = max(60.0, args.jobs / 20)
    try:
        await register_all(pools, workers, "noop", args.job_slots, 30.0)
        e2e = JobRun(args.jobs, args.report == "each")
        load = Load(dep).start()
        done, tasks, conns = await run_workers(dep, workers, e2e, args)
        await submit_jobs(pools, admin, e2e, args.submitters, args.batch)
        await wait_done(done, e2e, budget)
        e2e.load = load.stop()
        await stop_workers(done, tasks, conns)
        _progress(f"{dep.label} jobs end to end: {e2e.end_to_end:.0f}/s")

        backlog = JobRun(args.jobs, args.report == "each")
        load = Load(dep).start()
        await submit_jobs(pools, admin, backlog, args.submitters, args.batch)
        submit_load = load.stop()
        profile("jobs", min(10.0, args.jobs / 200))
        load = Load(dep).start()
        done, tasks, conns = await run_workers(dep, workers, backlog, args)
        await wait_done(done, backlog, budget)
        backlog.load = load.stop()
        backlog.load["submit_srv"] = submit_load["srv"]
        await stop_workers(done, tasks, conns)
        _progress(
            f"{dep.label} jobs submit {backlog.submit_rate:.0f}/s, drain {backlog.drain:.0f}/s"
        )
        verified = await asyncio.to_thread(count_succeeded, dep.db_url)
        return JobResult(e2e, backlog, verified)
    finally:
        pools.close()


def admin_token(secret: str) -> str:
    return mint_token(secret, Identity(subject="bench", role="admin"), ttl=4 * 3600)


def count_succeeded(db_url: str) -> int:
    """Jobs the database holds as succeeded: every counted completion must be there."""
    from sqlalchemy import create_engine, func, select
    from sqlalchemy.orm import Session

    from edgefleet.db.models import Job

    engine = create_engine(db_url)
    try:
        with Session(engine) as session:
            return session.scalar(select(func.count()).where(Job.state == "success")) or 0
    finally:
        engine.dispose()


# --- one configuration ----------------------------------------------------------------------


@dataclass
class ConfigResult:
    label: str
    backend: str
    replicas: int
    health: Outcome | None = None
    heartbeat: HeartbeatResult | None = None
    fleet: list[FleetStep] = field(default_factory=list)
    jobs: JobResult | None = None
    server_errors: int = 0
    #: phase -> the ceiling (req/s) measured right before it
    ceilings: dict[str, float] = field(default_factory=dict)


async def run_config(
    backend: str,
    replicas: int,
    args: argparse.Namespace,
    pg: PgCluster | None,
    pg_url: str,
    ceiling: Ceiling,
) -> ConfigResult:
    env = new_env(keep=args.keep)
    if backend == "sqlite":
        db_url = f"sqlite:///{env.home}/edgefleet.db"
    else:
        db_url = create_database(pg_url, f"scale_{replicas}_{uuid.uuid4().hex[:6]}")
    dep = Deployment(backend, env, db_url, pg_pid=pg.postmaster_pid() if pg else None)
    result = ConfigResult(f"{backend} x{replicas}", backend, replicas)
    try:
        await asyncio.to_thread(dep.start, replicas)
        _progress(f"== {dep.label}: servers on ports {dep.ports}")
        profile = profiler(dep, args)
        label = dep.label
        result.ceilings["health"] = await ceiling.measure(f"{label} health")
        result.health = await measure_health(dep, args.ceiling_seconds)
        if "heartbeat" not in args.skip:
            result.ceilings["heartbeat"] = await ceiling.measure(f"{label} heartbeat")
            result.heartbeat = await measure_heartbeats(dep, args, profile)
        if "fleet" not in args.skip:
            result.ceilings["fleet"] = await ceiling.measure(f"{label} fleet")
            result.fleet = await measure_fleet(dep, args)
        if "jobs" not in args.skip:
            result.ceilings["jobs"] = await ceiling.measure(f"{label} jobs")
            result.jobs = await measure_jobs(dep, args, profile)
        result.server_errors = dep.errors()
        for line in [ln for s in dep.servers for ln in s.error_lines()][:5]:
            _progress(f"  server error: {line}")
        return result
    finally:
        await asyncio.to_thread(dep.stop)


def profiler(dep: Deployment, args: argparse.Namespace) -> Callable[[str, float], None]:
    """``profile(phase, seconds)``: a raw py-spy record of the single replica, if asked for."""

    def profile(phase: str, seconds: float) -> None:
        if not args.py_spy or len(dep.servers) != 1:
            return
        out = Path(args.py_spy) / f"{dep.backend}-{phase}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        dep.servers[0].profile(str(out), seconds)

    return profile


# --- reporting ------------------------------------------------------------------------------


def frac(value: float | None, ceiling: float) -> str:
    if value is None or not (math.isfinite(value) and math.isfinite(ceiling)) or ceiling <= 0:
        return "-"
    return f"{value / ceiling:.3f}"


def rate(value: float | None) -> str:
    return f"{value:.0f}/s" if value is not None and math.isfinite(value) else "-"


def best_fleet(steps: list[FleetStep], args: argparse.Namespace) -> FleetStep | None:
    passing = [s for s in steps if fleet_keeps_up(s, args)]
    return passing[-1] if passing else None


def print_details(results: list[ConfigResult], args: argparse.Namespace) -> None:
    hb_rows, fleet_rows, job_rows = [], [], []
    for res in results:
        if res.heartbeat:
            probe = res.heartbeat.probe
            hb_rows.append(_hb_row(res.label, "probe x32", probe, "-"))
            for step in res.heartbeat.steps:
                ok = "ok" if hb_passes(step, args.hb_p99) else "over"
                hb_rows.append(_hb_row(res.label, f"open {step.offered:.0f}/s", step, ok))
        for step in res.fleet:
            ok = "ok" if fleet_keeps_up(step, args) else "BEHIND"
            fleet_rows.append(
                [
                    res.label,
                    step.size,
                    f"{step.rate:.0f}/{step.expected_rate:.0f}/s",
                    fmt_ms(step.lat.p50),
                    fmt_ms(step.lat.p99),
                    step.failed,
                    f"{step.stale} ({step.max_staleness:.1f} s)",
                    f"{step.register_rate:.0f}/s",
                    *fmt_load(step.load),
                    ok,
                ]
            )
        if res.jobs:
            job_rows += _job_rows(res)
    headers = ["config", "load", "answered", "p50", "p99", "failed", *LOAD_HEADERS, ""]
    if hb_rows:
        print_table("heartbeat steps (CPU in cores)", headers, hb_rows)
    if fleet_rows:
        print_table(
            f"fleet at a {args.fleet_interval:g} s heartbeat, {args.fleet_window:g} s windows; "
            + fleet_criterion(args),
            ["config", "N", "beats", "p50", "p99", "failed", "stale (oldest)", "register",
             *LOAD_HEADERS, ""],
            fleet_rows,
        )  # fmt: skip
    if job_rows:
        print_table(
            "no-op jobs (fetches and watches per completed job; failed: submit/fetch/result/"
            "repeated; CPU while the workers ran)",
            ["config", "run", "jobs/s", "submit/s", "done", "fetch/watch per job", "failed",
             *LOAD_HEADERS],
            job_rows,
        )  # fmt: skip


def _hb_row(label: str, what: str, out: Outcome, verdict: str) -> list[object]:
    return [
        label,
        what,
        f"{out.rate:.0f}/s",
        fmt_ms(out.lat.p50),
        fmt_ms(out.lat.p99),
        out.failed,
        *fmt_load(out.load),
        verdict,
    ]


def _job_rows(res: ConfigResult) -> list[list[object]]:
    jobs = res.jobs
    assert jobs is not None
    rows = []
    for name, run, figure in (
        ("end to end", jobs.e2e, jobs.e2e.end_to_end),
        ("backlog drain", jobs.backlog, jobs.backlog.drain),
    ):
        done = max(1, run.completed)
        rows.append(
            [
                res.label,
                name,
                rate(figure),
                rate(run.submit_rate),
                f"{run.completed}/{run.jobs}",
                f"{run.fetches / done:.2f}/{run.watches / done:.2f}",
                f"{run.submit_failed}/{run.fetch_failed}/{run.report_failed}/{run.repeated}",
                *fmt_load(run.load),
            ]
        )
    rows[-1][-1] = f"{rows[-1][-1]} (db: {jobs.verified} succeeded)"
    return rows


def print_summary(results: list[ConfigResult], args: argparse.Namespace) -> None:
    rows = []
    for res in results:
        ceil = res.ceilings.get
        nan = float("nan")
        hb = res.heartbeat.best.rate if res.heartbeat and res.heartbeat.best else None
        fleet = best_fleet(res.fleet, args)
        fleet_rate = fleet.size / args.fleet_interval if fleet else None
        e2e = res.jobs.e2e.end_to_end if res.jobs else None
        drain = res.jobs.backlog.drain if res.jobs else None
        submit = res.jobs.backlog.submit_rate if res.jobs else None
        health = res.health.rate if res.health else None
        rows.append(
            [
                res.label,
                " / ".join(f"{v:.0f}" for v in res.ceilings.values()) or "-",
                f"{rate(health)} ({frac(health, ceil('health', nan))})",
                f"{rate(hb)} ({frac(hb, ceil('heartbeat', nan))})",
                f"{fleet.size if fleet else '-'} ({frac(fleet_rate, ceil('fleet', nan))})"
                + ("+" if fleet and fleet is res.fleet[-1] else ""),
                f"{rate(e2e)} ({frac(e2e, ceil('jobs', nan))})",
                f"{rate(drain)} ({frac(drain, ceil('jobs', nan))})",
                f"{rate(submit)} ({frac(submit, ceil('jobs', nan))})",
                res.server_errors,
            ]
        )
    print_table(
        "SUMMARY: (fraction of the ceiling measured right before the phase; fleet: N/interval"
        " beats/s over the ceiling; N+ = the largest size tried kept up)",
        ["config", "ceilings h/hb/fl/jobs", "health", f"hb/s p99<{fmt_ms(args.hb_p99)}",
         f"fleet @{args.fleet_interval:g}s", "jobs e2e", "dispatch+done", "submit",
         "srv errors"],
        rows,
    )  # fmt: skip
    print_growth(results, args)


def print_growth(results: list[ConfigResult], args: argparse.Namespace) -> None:
    """Each figure on two replicas divided by the same on one (PostgreSQL)."""
    by = {(r.backend, r.replicas): r for r in results}
    one, two = by.get(("postgres", 1)), by.get(("postgres", 2))
    if not (one and two):
        return

    def figures(res: ConfigResult) -> list[float | None]:
        fleet = best_fleet(res.fleet, args)
        return [
            res.health.rate if res.health else None,
            res.heartbeat.best.rate if res.heartbeat and res.heartbeat.best else None,
            fleet.size if fleet else None,
            res.jobs.e2e.end_to_end if res.jobs else None,
            res.jobs.backlog.drain if res.jobs else None,
            res.jobs.backlog.submit_rate if res.jobs else None,
        ]

    ratios = []
    for a, b in zip(figures(one), figures(two), strict=True):
        ok = a is not None and b is not None and a > 0 and math.isfinite(a * b)
        ratios.append(f"{b / a:.2f}x" if ok else "-")
    print_table(
        "growth from 1 to 2 replicas (postgres x2 / postgres x1)",
        ["", "health", "hb/s", "fleet", "jobs e2e", "dispatch+done", "submit"],
        [["x2 / x1", *ratios]],
    )


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- main -----------------------------------------------------------------------------------


async def amain(args: argparse.Namespace) -> None:
    random.seed(args.seed)
    raise_nofile(65536)
    configs = configurations(args)
    pg = None
    pg_url = args.pg_url or ""
    results: list[ConfigResult] = []
    ceiling = Ceiling(args.ceiling_seconds, "ceiling" not in args.skip)
    try:
        if any(backend == "postgres" for backend, _ in configs) and not pg_url:
            pg = await asyncio.to_thread(PgCluster(keep=args.keep).start)
            pg_url = pg.url
            _progress(f"PostgreSQL cluster on port {pg.port} ({pg.dir})")
        await ceiling.start()
        for backend, replicas in configs:
            await asyncio.to_thread(wait_for_quiet_host, args.quiet_host, 180.0)
            results.append(await run_config(backend, replicas, args, pg, pg_url, ceiling))
    finally:
        ceiling.stop()
        if pg is not None:
            await asyncio.to_thread(pg.stop)
    print_report(results, ceiling.samples, args)


def print_report(
    results: list[ConfigResult], ceilings: list[tuple[str, Outcome]], args: argparse.Namespace
) -> None:
    print(f"\nmeasured scale; code: {git_state()}; {os.cpu_count()} cores; quick={args.quick}")
    if ceilings:
        print_table(
            "ceiling: bare FastAPI async endpoint, one uvicorn process, 32 callers, before each"
            " phase",
            ["before", "req/s", "p50", "p99", *LOAD_HEADERS],
            [
                [when, rate(c.rate), fmt_ms(c.lat.p50), fmt_ms(c.lat.p99), *fmt_load(c.load)]
                for when, c in ceilings
            ],
        )
    print_details(results, args)
    print_summary(results, args)


def main() -> None:
    args = parse_args()
    install_signal_exit()
    run_async(amain(args))


if __name__ == "__main__":
    main()
