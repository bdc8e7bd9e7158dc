"""edgefleet against Apache Airflow's edge3 provider, side by side in one run.

Installs Airflow 3 with the edge3 provider into a cached throwaway venv (the first run's pip
install takes minutes), starts a real ``edgefleet server`` + ``edgefleet worker`` and a real
``airflow api-server`` + ``airflow edge worker`` (SQLite each), and measures:

1. a concurrency change from each system's CLI to its real worker adopting it, each with its
   defaults (edgefleet: pushed to the worker's held long-poll; edge3: delivered in the answer
   to the worker's next heartbeat, ``[edge] heartbeat_interval`` = 30 s, checked between
   ``job_poll_interval`` = 5 s sleeps): CLI exec -> CLI exit, -> the worker logs the new
   value, -> the server shows the worker's applied value (``list-workers``);
2. heartbeats/s, latency and the server's CPU per heartbeat with 32 and 128 simulated
   workers heartbeating back to back, one load client for both (``_sim``'s closed loop: only
   URL, body and credentials differ).

    .venv/bin/python bench/peer_edge3.py                 # ~8 min once the venv is cached
    .venv/bin/python bench/peer_edge3.py --quick         # 1 trial, 5 s rounds
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from _common import (
    Bench,
    fmt_ms,
    fmt_rate,
    git_state,
    install_signal_exit,
    print_table,
    progress,
    session_cpu,
    wait_for_quiet_host,
)
from _edge3 import (
    AIRFLOW_VERSION,
    EDGE3_VERSION,
    HEARTBEAT_INTERVAL,
    JOB_POLL_INTERVAL,
    Edge3Deployment,
    Edge3Sim,
    default_venv,
    ensure_venv,
)
from _sim import (
    Outcome,
    Pools,
    SimWorker,
    closed_loop,
    for_all,
    register_all,
    run_async,
    sim_workers,
)

from support import EDGEFLEET, ManagedProcess, free_port

Sim = SimWorker | Edge3Sim
WORKER = "peer-w1"
START_CONCURRENCY = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--trials", type=int, default=3, help="concurrency changes per system")
    add("--sizes", default="32,128", help="simulated workers per load round, comma-separated")
    add("--duration", type=float, default=20.0, help="seconds measured per load round")
    add("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    add("--quick", action="store_true", help="1 trial, 5 s rounds: a smoke run")
    add("--skip", default="", help="comma-separated: concurrency,load")
    add("--airflow-version", default=AIRFLOW_VERSION)
    add("--edge3-version", default=EDGE3_VERSION)
    add("--venv", type=Path, help="the Airflow venv (default: a cache dir under the tmp dir)")
    add("--quiet-host", type=float, metavar="CORES", help="wait until others use fewer cores")
    add("--keep", action="store_true", help="keep the temporary homes (databases, logs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.duration, args.warmup = 1, 5.0, 1.0
    args.sizes = [int(n) for n in args.sizes.split(",") if n]
    args.skip = set(filter(None, args.skip.split(",")))
    args.venv = args.venv or default_venv(args.airflow_version, args.edge3_version)
    return args


# --- 1. concurrency change ----------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """Seconds from the CLI's exec to each observation (NaN: not seen before the timeout)."""

    cli_exit: float
    worker_adopted: float
    server_shows: float


def adoption_line(value: int) -> re.Pattern[str]:
    """Both workers log the same sentence when they take a new value from the centre."""
    return re.compile(rf"concurrency updated from \d+ to {value} by remote request", re.I)


def timed_change(
    argv: list[str],
    env: dict[str, str],
    worker: ManagedProcess,
    value: int,
    server_shows: Callable[[], bool],
    timeout: float,
) -> Change:
    """Run the CLI and watch, every 20 ms, its exit, the worker's log and the server's view."""
    line, offset = adoption_line(value), worker.log_path.stat().st_size
    seen: dict[str, float] = {}
    t0 = time.monotonic()
    cli = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    while len(seen) < 3 and (now := time.monotonic()) < t0 + timeout:
        if "cli" not in seen and cli.poll() is not None:
            seen["cli"] = now - t0
            if cli.returncode != 0:
                output = cli.stdout.read().decode(errors="replace") if cli.stdout else ""
                raise RuntimeError(f"{' '.join(argv)}: exit {cli.returncode}\n{output[-2000:]}")
        if "worker" not in seen:
            with open(worker.log_path, "rb") as log:
                log.seek(offset)
                if line.search(log.read().decode(errors="replace")):
                    seen["worker"] = now - t0
        if "server" not in seen and server_shows():
            seen["server"] = now - t0
        time.sleep(0.02)
    with contextlib.suppress(subprocess.TimeoutExpired):
        cli.wait(timeout=30)
    return Change(*(seen.get(k, math.nan) for k in ("cli", "worker", "server")))


def edgefleet_change(bench: Bench, worker: ManagedProcess, value: int, timeout: float) -> Change:
    argv = [str(EDGEFLEET), "set-worker-concurrency", "-H", WORKER, "-c", str(value)]

    with bench.admin() as api:

        def shows() -> bool:
            view = api.find_worker(WORKER) or {}
            applied = view.get("applied_version") == view.get("desired_version")
            return applied and view.get("applied_concurrency") == value

        return timed_change(argv, bench.env(), worker, value, shows, timeout)


def edge3_change(edge3: Edge3Deployment, worker: ManagedProcess, value: int, timeout: float):
    argv = edge3.airflow("edge", "set-worker-concurrency", "--edge-hostname", WORKER)
    argv += ["--concurrency", str(value)]

    def shows() -> bool:
        return edge3.reported_concurrency(WORKER) == value

    return timed_change(argv, edge3.env(), worker, value, shows, timeout)


def run_changes(trials: int, change_a, change_b, timeout: float) -> tuple[list, list]:
    """Alternate the two systems, each trial to a value its worker does not have."""
    results_a, results_b = [], []
    for trial in range(trials):
        value = 5 + trial % 2
        results_a.append(change_a(value, timeout))
        progress(f"edgefleet change {trial + 1}/{trials}: {results_a[-1]}")
        results_b.append(change_b(value, timeout))
        progress(f"edge3 change {trial + 1}/{trials}: {results_b[-1]}")
    return results_a, results_b


# --- 2. heartbeat load --------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """The measured window, and CPU seconds the server and this client used per answered
    heartbeat (the figure that holds on a busy host)."""

    out: Outcome
    server_cpu: float
    client_cpu: float


async def heartbeat_load(
    port: int,
    server_pid: int,
    register: Callable[[Pools], Awaitable[object]],
    sims: list[Sim],
    args: argparse.Namespace,
) -> Load:
    """Register, then one loop per simulated worker heartbeats back to back: ``--warmup``
    seconds uncounted, then ``--duration`` measured."""
    pools, beat = Pools([port]), lambda i: sims[i].heartbeat()
    try:
        await register(pools)
        await closed_loop(pools, beat, len(sims), args.warmup, by_caller=True)
        server0, client0 = session_cpu(server_pid), time.process_time()
        out = await closed_loop(pools, beat, len(sims), args.duration, by_caller=True)
        n = out.answered or math.nan
        server, client = session_cpu(server_pid) - server0, time.process_time() - client0
        return Load(out, server / n, client / n)
    finally:
        pools.close()


# --- table ---------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    done = [v for v in values if math.isfinite(v)]
    return statistics.median(done) if done else math.nan


def span(values: list[float]) -> str:
    done = sorted(v for v in values if math.isfinite(v))
    missed = len(values) - len(done)
    text = fmt_ms(statistics.median(done)) if done else "-"
    if len(done) > 1:
        text += f" ({fmt_ms(done[0])}–{fmt_ms(done[-1])})"
    return text + (f", {missed} not seen" if missed else "")


def ratio(ours: float, theirs: float, higher_is_better: bool = False) -> str:
    if not (math.isfinite(ours) and math.isfinite(theirs)) or min(ours, theirs) <= 0:
        return "-"
    factor = ours / theirs if higher_is_better else theirs / ours
    return f"{factor:.1f}×" if factor < 100 else f"{factor:.0f}×"


def change_rows(ours: list[Change], theirs: list[Change]) -> list[list[str]]:
    measures: dict[str, Callable[[Change], float]] = {
        "CLI exec -> CLI exit": lambda c: c.cli_exit,
        "CLI exec -> worker adopted (its log)": lambda c: c.worker_adopted,
        "CLI exec -> applied value shown by the server": lambda c: c.server_shows,
        "CLI exit -> worker adopted": lambda c: c.worker_adopted - c.cli_exit,
    }
    rows = []
    for label, measure in measures.items():
        a, b = [measure(c) for c in ours], [measure(c) for c in theirs]
        rows.append([label, span(a), span(b), ratio(median(a), median(b))])
    return rows


def load_rows(size: int, ours: Load, theirs: Load) -> list[list[str]]:
    def rate(load: Load) -> str:
        return fmt_rate(load.out.rate) + (f" ({load.out.failed} failed)" if load.out.failed else "")

    rate_ratio = ratio(ours.out.rate, theirs.out.rate, higher_is_better=True)
    rows = [[f"heartbeats/s, {size} workers", rate(ours), rate(theirs), rate_ratio]]
    for label, a, b in (
        ("heartbeat p50", ours.out.lat.p50, theirs.out.lat.p50),
        ("heartbeat p99", ours.out.lat.p99, theirs.out.lat.p99),
        ("server CPU per heartbeat", ours.server_cpu, theirs.server_cpu),
        ("load client CPU per heartbeat", ours.client_cpu, theirs.client_cpu),
    ):
        compare = ratio(a, b) if "client" not in label else ""  # one client: context only
        rows.append([f"{label}, {size} workers", fmt_ms(a), fmt_ms(b), compare])
    return rows


# --- run -----------------------------------------------------------------------------------


def load_round(size: int, bench: Bench, edge3: Edge3Deployment, edge3_pid: int, args) -> list:
    """``size`` simulated workers against each server in turn, edgefleet first."""
    ours = sim_workers(bench.secret, f"sim{size}-", size)
    theirs = [Edge3Sim(edge3, f"sim{size}-{i:05d}") for i in range(size)]
    loads = []
    for name, port, pid, register, sims in (
        ("edgefleet", int(bench.api_url.rsplit(':', 1)[1]), bench.servers[0].pid,
         lambda pools: register_all(pools, ours, "default"), ours),
        ("edge3", edge3.port, edge3_pid,
         lambda pools: for_all(pools, [sim.register() for sim in theirs], 16), theirs),
    ):  # fmt: skip
        progress(f"load: {size} simulated workers, {name}")
        loads.append(run_async(heartbeat_load(port, pid, register, sims, args)))
    return load_rows(size, *loads)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_exit()
    progress(f"Airflow venv {args.venv} (pip install on the first run: minutes)")
    venv = ensure_venv(args.venv, args.airflow_version, args.edge3_version)
    wait_for_quiet_host(args.quiet_host)
    rows: list[list[str]] = []
    with Bench(keep=args.keep) as bench:
        versions = (args.airflow_version, args.edge3_version)
        edge3 = Edge3Deployment(venv, bench.home / "airflow", bench.registry, free_port(), versions)
        progress("airflow db migrate")
        edge3.run("db", "migrate")
        api_server = edge3.start_api_server()  # its start takes a while: edgefleet's meanwhile
        progress("edgefleet server and worker")
        bench.start_server()
        ours_worker = bench.start_worker(WORKER, "-c", str(START_CONCURRENCY))
        progress("airflow api-server and edge worker")
        edge3.wait_healthy(api_server)
        their_worker = edge3.start_worker(WORKER, START_CONCURRENCY)
        timeout = 3 * (HEARTBEAT_INTERVAL + JOB_POLL_INTERVAL) + 60
        if "concurrency" not in args.skip:
            ours, theirs = run_changes(
                args.trials,
                lambda v, t: edgefleet_change(bench, ours_worker, v, t),
                lambda v, t: edge3_change(edge3, their_worker, v, t),
                timeout,
            )
            rows += change_rows(ours, theirs)
        if "load" not in args.skip:
            for size in args.sizes:
                rows += load_round(size, bench, edge3, api_server.pid, args)
    print_table(
        f"edgefleet ({git_state()}) against Airflow {args.airflow_version} + edge3 "
        f"{args.edge3_version}; {os.cpu_count()} cores, {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}",
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
