"""edgefleet against Apache Airflow's edge3 provider, side by side in one run.

A real server and worker of each (SQLite, their defaults; Airflow 3 + edge3 in a cached venv,
the first run's pip install takes minutes), then: a concurrency change from each CLI (exec ->
exit, -> the worker logs the new value, -> the server shows it applied), and heartbeats/s,
latency and server CPU per heartbeat with 32 and 128 simulated workers heartbeating back to
back, one load client for both. Only the provider's documented interfaces are used: its
configuration, CLI, worker API (a JWT signed with ``[api_auth] jwt_secret``, its ``method``
claim the called path) and the ``edge_worker`` table ``airflow edge list-workers`` reads.

    .venv/bin/python bench/peer_edge3.py [--quick]    # ~8 min once the venv is cached
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import jwt
import uvloop
from _common import Bench, fmt_ms, fmt_rate, git_state, print_table, progress, summarize
from _sim import Fleet, Outcome, Pools, Request, closed_loop, for_all, sim_workers

from support import EDGEFLEET, ManagedProcess, WaitTimeout, free_port, wait_until
from support.airflow_stack import AirflowProcess, base_env
from support.processes import spawn

AIRFLOW, EDGE3 = "3.3.2", "5.1.0"
#: The provider's documented defaults (``[edge] job_poll_interval``, ``heartbeat_interval``).
JOB_POLL_INTERVAL, HEARTBEAT_INTERVAL = 5, 30
EDGE3_API = "/edge_worker/v1/"
WORKER, START_CONCURRENCY = "peer-w1", 8


def ensure_venv() -> Path:
    """Airflow's venv, installed once; a stamp marks it complete (an interrupted install is
    redone)."""
    venv = Path(tempfile.gettempdir(), "edgefleet-bench-cache", f"airflow-{AIRFLOW}-edge3-{EDGE3}")
    if not (venv / ".edgefleet-bench-installed").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        packages = [f"apache-airflow=={AIRFLOW}", f"apache-airflow-providers-edge3=={EDGE3}"]
        pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, *packages], check=True)
        (venv / ".edgefleet-bench-installed").write_text(f"{' '.join(packages)}\n")
    return venv


class Edge3:
    """One Airflow home: a migrated SQLite database, an api-server with the edge worker API
    enabled, edge workers, and the ``airflow`` CLI, all with the provider's defaults."""

    def __init__(self, venv: Path, bench: Bench) -> None:
        self.venv, self.home, self.registry = venv, bench.home / "airflow", bench.registry
        self.port, self.secret = free_port(), secrets.token_hex(40)  # HS512: >= 64 bytes
        # Not the default file name: the provider's CLI refuses to run on the default URL.
        self.db_path = self.home / "edge3.db"
        (self.home / "dags").mkdir(parents=True, exist_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        url = f"http://127.0.0.1:{self.port}"
        return base_env(self.home, self.home / "dags") | {
            "AIRFLOW__CORE__EXECUTOR": "airflow.providers.edge3.executors.EdgeExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
            "AIRFLOW__API_AUTH__JWT_SECRET": self.secret,
            "AIRFLOW__EDGE__API_ENABLED": "True",
            "AIRFLOW__EDGE__API_URL": f"{url}{EDGE3_API}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            "NO_PROXY": "*",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def airflow(self, *args: str) -> list[str]:
        return [str(self.venv / "bin" / "airflow"), *args]

    def start(self, name: str, *args: str, **env: str) -> AirflowProcess:
        argv, log = self.airflow(*args), self.registry.log_path(f"airflow-{name}")
        process = AirflowProcess(name, argv, spawn(argv, self.env(**env), log), log)
        self.registry.add(process)
        return process

    def start_api_server(self) -> AirflowProcess:
        """``airflow db migrate``, then the api-server with its default worker count (one),
        logging at WARNING like the edgefleet server (no access log line)."""
        migrate = self.airflow("db", "migrate")
        subprocess.run(migrate, env=self.env(), check=True, capture_output=True)
        args = ("api-server", "--host", "127.0.0.1", "--port", str(self.port))
        return self.start("api-server", *args, AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING")

    def wait_healthy(self, server: AirflowProcess) -> None:
        def up() -> bool:
            if not server.alive():
                raise RuntimeError(f"api-server exited:\n{server.log_tail()}")
            url = f"http://127.0.0.1:{self.port}/api/v2/monitor/health"
            return httpx.get(url, timeout=2).is_success

        wait_until(up, timeout=300, interval=0.5, ignore=(httpx.HTTPError,), message="api-server")

    def start_worker(self, concurrency: int) -> AirflowProcess:
        args = ("--edge-hostname", WORKER, "--concurrency", str(concurrency))
        worker = self.start(f"worker-{WORKER}", "edge", "worker", *args)
        wait_until(
            lambda: self.reported_concurrency() == concurrency,
            timeout=300,
            interval=0.5,
            message=lambda: f"edge worker {WORKER} registered; log:\n{worker.log_tail()}",
        )
        return worker

    def reported_concurrency(self) -> int | None:
        """The worker's last reported concurrency (``airflow edge list-workers``'s)."""
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5) as db:
            query = "SELECT sysinfo FROM edge_worker WHERE worker_name = ?"
            row = db.execute(query, (WORKER,)).fetchone()
        return json.loads(row[0]).get("concurrency") if row and row[0] else None

    def token(self, path: str) -> str:
        """A worker API token as the provider's workers sign it (bound to the called path)."""
        now = int(time.time())
        claims = {"jti": uuid.uuid4().hex, "aud": "api", "nbf": now, "iat": now}
        return jwt.encode(claims | {"exp": now + 30, "method": path}, self.secret, "HS512")


class Edge3Sim:
    """A worker of the edge3 provider's protocol: register by POST, heartbeat by PATCH."""

    def __init__(self, edge3: Edge3, name: str, concurrency: int = 2) -> None:
        self.edge3, self.path = edge3, f"worker/{name}"
        self.sysinfo = {"status": 20, "airflow_version": AIRFLOW, "edge_provider_version": EDGE3}
        self.sysinfo |= {"concurrency": concurrency, "free_concurrency": concurrency}

    def _call(self, method: str, state: str) -> Request:
        headers = {"Authorization": self.edge3.token(self.path)}
        body = {"state": state, "jobs_active": 0, "queues": None, "sysinfo": self.sysinfo}
        return method, f"{EDGE3_API}{self.path}", headers, body

    def register(self) -> Request:
        return self._call("POST", "starting")

    def heartbeat(self) -> Request:
        return self._call("PATCH", "idle")


def timed_change(
    argv: list[str], env: dict, worker: ManagedProcess, value: int, shows: Callable[[], bool]
) -> list[float]:
    """Seconds from the CLI's exec to its exit, to the worker logging the new value, and to
    the server showing it applied (NaN: not seen in time)."""
    # Both workers log the same sentence when they take a new value from the centre.
    line = re.compile(rf"concurrency updated from \d+ to {value} by remote request", re.I)
    offset, seen, t0 = len(worker.log_text()), {}, time.monotonic()
    cli = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def exited() -> bool:
        if cli.poll():
            output = cli.stdout.read().decode(errors="replace") if cli.stdout else ""
            raise RuntimeError(f"{' '.join(argv)}: exit {cli.returncode}\n{output[-2000:]}")
        return cli.returncode is not None

    checks = {"cli": exited, "worker": lambda: line.search(worker.log_text(), offset), "": shows}

    def all_seen() -> bool:
        now = time.monotonic() - t0
        seen.update({k: now for k, check in checks.items() if k not in seen and check()})
        return len(seen) == len(checks)

    with contextlib.suppress(WaitTimeout):
        wait_until(
            all_seen, timeout=3 * (HEARTBEAT_INTERVAL + JOB_POLL_INTERVAL) + 60, interval=0.02
        )
    with contextlib.suppress(subprocess.TimeoutExpired):
        cli.wait(timeout=30)
    return [seen.get(k, math.nan) for k in checks]


def changes(trials: int, bench: Bench, ours: ManagedProcess, edge3: Edge3, theirs) -> list:
    """Alternate the two systems, each trial to a value its worker does not have; a row
    per observation: both medians (min-max) and edgefleet's advantage."""
    results: dict[str, list] = {"edgefleet": [], "edge3": []}
    with bench.admin() as api:
        for trial in range(trials):
            value = 5 + trial % 2

            def applied(value: int = value) -> bool:
                view = api.find_worker(WORKER) or {}
                done = view.get("applied_version") == view.get("desired_version")
                return done and view.get("applied_concurrency") == value

            argv = [str(EDGEFLEET), "set-worker-concurrency", "-H", WORKER, "-c", str(value)]
            results["edgefleet"].append(timed_change(argv, bench.env(), ours, value, applied))
            argv = edge3.airflow("edge", "set-worker-concurrency", "--edge-hostname", WORKER)
            argv += ["--concurrency", str(value)]
            shows = partial(lambda v: edge3.reported_concurrency() == v, value)
            results["edge3"].append(timed_change(argv, edge3.env(), theirs, value, shows))
            seen = {k: ", ".join(map(fmt_ms, r[-1])) for k, r in results.items()}
            progress(f"change {trial + 1}/{trials}, exit, adopted, shown: {seen}")
    rows, names = [], ("CLI exec -> CLI exit", "CLI exec -> worker adopted (its log)")
    names += ("CLI exec -> applied value shown by the server", "CLI exit -> worker adopted")
    for n, name in enumerate(names):
        a, b = ([(*r, r[1] - r[0])[n] for r in results[k]] for k in ("edgefleet", "edge3"))
        rows.append([name, span(a), span(b), ratio(summarize(a).p50, summarize(b).p50)])
    return rows


async def heartbeat_load(pools: Pools, sims: list, pid: int, args) -> Outcome:
    """One loop per simulated worker: ``--warmup`` s uncounted, then ``--duration`` s."""

    def beat(i: int) -> Request:
        return sims[i].heartbeat()

    await closed_loop(pools, beat, len(sims), args.warmup, by_caller=True)
    return await closed_loop(pools, beat, len(sims), args.duration, by_caller=True, pids=[pid])


async def loads(bench: Bench, edge3: Edge3, edge3_pid: int, size: int, args) -> list[Outcome]:
    """``size`` simulated workers against each server in turn, edgefleet first."""
    fleet, pools = Fleet(bench.ports, 30.0), Pools([edge3.port])
    theirs = [Edge3Sim(edge3, f"sim{size}-{i:05d}") for i in range(size)]
    try:
        agents = await fleet.add(sim_workers(bench.secret, f"sim{size}-", size), "default")
        await for_all(pools, [sim.register() for sim in theirs], 16)
        progress(f"load: {size} simulated workers, edgefleet")
        ours = [agent.worker for agent in agents]
        a = await heartbeat_load(fleet.pools, ours, bench.servers[0].pid, args)
        progress(f"load: {size} simulated workers, edge3")
        return [a, await heartbeat_load(pools, theirs, edge3_pid, args)]
    finally:
        await fleet.close()
        pools.close()


def load_rows(size: int, outcomes: list[Outcome]) -> list:
    a, b = outcomes

    def rate(out: Outcome) -> str:
        return fmt_rate(out.rate) + (f" ({out.failed} failed)" if out.failed else "")

    rows = [[f"heartbeats/s, {size} workers", rate(a), rate(b), ratio(b.rate, a.rate)]]
    for name, x, y in (
        ("heartbeat p99", a.lat.p99, b.lat.p99),
        ("server CPU per heartbeat", a.server_cpu, b.server_cpu),
    ):
        rows.append([f"{name}, {size} workers", fmt_ms(x), fmt_ms(y), ratio(x, y)])
    # One load client for both: its CPU is context, not a comparison.
    cpu = [fmt_ms(a.client_cpu), fmt_ms(b.client_cpu), ""]
    rows.append([f"load client CPU per heartbeat, {size} workers", *cpu])
    return rows


def span(values: list[float]) -> str:
    """Median (min–max), and how many were not seen."""
    s, low = summarize(values), min(values, key=lambda v: v if math.isfinite(v) else math.inf)
    text = fmt_ms(s.p50) + (f" ({fmt_ms(low)}–{fmt_ms(s.max)})" if s.n > 1 else "")
    return text + (f", {s.missed} not seen" if s.missed else "")


def ratio(ours: float, theirs: float) -> str:
    """edgefleet's advantage: a time of edge3's over edgefleet's (a rate: passed swapped)."""
    if not (math.isfinite(ours) and math.isfinite(theirs)) or min(ours, theirs) <= 0:
        return "-"
    return f"{theirs / ours:.1f}×" if theirs / ours < 100 else f"{theirs / ours:.0f}×"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--trials", type=int, default=3, help="concurrency changes per system")
    add("--sizes", default="32,128", help="simulated workers per load round, comma-separated")
    add("--duration", type=float, default=20.0, help="seconds measured per load round")
    add("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    add("--quick", action="store_true", help="1 trial, 5 s rounds: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.duration, args.warmup = 1, 5.0, 1.0
    progress("Airflow venv (pip install on the first run: minutes)")
    venv = ensure_venv()
    with Bench() as bench:
        edge3 = Edge3(venv, bench)
        api_server = edge3.start_api_server()  # its start takes a while: edgefleet's meanwhile
        bench.start_server()
        ours = bench.start_worker(WORKER, "-c", str(START_CONCURRENCY))
        edge3.wait_healthy(api_server)
        theirs = edge3.start_worker(START_CONCURRENCY)
        rows = changes(args.trials, bench, ours, edge3, theirs)
        for size in (int(n) for n in args.sizes.split(",") if n):
            rows += load_rows(size, uvloop.run(loads(bench, edge3, api_server.pid, size, args)))
    print_table(
        f"edgefleet ({git_state()}) against Airflow {AIRFLOW} + edge3 {EDGE3}; "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}",
        ["metric", "edgefleet", "edge3", "ratio"],
        rows,
    )
    print(
        f"\nratio: edgefleet's advantage (time: edge3 / edgefleet; rate: edgefleet / edge3). "
        f"Concurrency changes: median (min–max) of {args.trials}; load rounds: "
        f"{args.duration:g} s after {args.warmup:g} s of warm-up, one connection per "
        f"simulated worker. edge3's documented intervals: job fetch poll every "
        f"{JOB_POLL_INTERVAL} s, heartbeat every {HEARTBEAT_INTERVAL} s."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
