"""How fast a real edge worker adopts a concurrency change: long-poll vs heartbeat-only.

Starts a real ``edgefleet server`` (fresh SQLite DB, random secret, loopback port) and two
real worker processes, each on its own queue and otherwise identical
(``edgefleet worker -H NAME -c LOW --heartbeat-interval 1``):

* ``long-poll``       - the default: the server wakes the worker's watch on every change;
* ``heartbeat-only``  - ``--no-long-poll``: the change arrives with the next heartbeat (1 s).

Each queue holds more long ``sleep`` jobs than will ever run. Every job writes a start marker
(its pid and ``date +%s.%N``) before ``exec sleep``, so "running" means a job process has
really started. Then, K times and interleaving the two workers:

* raise LOW -> HIGH: time from the PUT returning to the HIGH-th job process running
  (the job's own start stamp), and to the acknowledgement (``applied_at`` of the worker row,
  stamped by the server when the heartbeat carrying the new ``applied_version`` lands);
* lower HIGH -> LOW: time to the acknowledgement. Running jobs are never killed for a lower
  limit, so "running at the new limit" for a decrease is bounded by job length, not by the
  control plane; the benchmark then kills the surplus jobs itself and checks that the worker
  does not refill beyond LOW (over-limit starts are reported as violations).

All three clocks (the benchmark's ``time.time()``, the job's ``date``, the server's
``applied_at``) are CLOCK_REALTIME on this host. The change goes through
PUT /api/v1/workers/{host}/concurrency by default (``--via cli`` runs
``edgefleet set-worker-concurrency`` instead; its process exit is later than the server's
commit, so latencies measured from it can be slightly optimistic, down to negative).

At the end each worker gets SIGTERM twice (which kills its jobs); any job process left over
is killed by pid from its marker.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BenchEnv,
    CpuMeter,
    MachineMeter,
    Markers,
    ServerProcess,
    admin_client,
    edgefleet_cmd,
    fmt_ms,
    fmt_ratio,
    git_state,
    install_signal_exit,
    is_our_sleep,
    job_command,
    new_env,
    parse_server_env,
    print_table,
    start_worker,
    stop_worker,
    summarize,
    wait_for_quiet_host,
    wait_until,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rounds", "-k", type=int, default=10, help="raise+lower rounds per mode")
    parser.add_argument("--low", type=int, default=2, help="the worker's flag concurrency")
    parser.add_argument("--high", type=int, default=4, help="the raised concurrency")
    parser.add_argument("--heartbeat-interval", type=float, default=1.0)
    parser.add_argument(
        "--modes",
        default="long-poll,heartbeat-only",
        help="comma-separated subset of long-poll,heartbeat-only",
    )
    parser.add_argument("--via", choices=["api", "cli"], default="api", help="how to set it")
    parser.add_argument(
        "--job-seconds", type=int, default=600, help="sleep length of each job (killed at end)"
    )
    parser.add_argument(
        "--timeout", type=float, default=15.0, help="give up on one measurement after this"
    )
    parser.add_argument("--pause", type=float, default=0.3, help="settle time between steps")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="EDGEFLEET_KEY=VALUE",
        help="a setting for the server only (repeatable)",
    )
    parser.add_argument(
        "--quiet-host",
        type=float,
        metavar="CORES",
        help="first wait (up to 10 min) until other processes use fewer than CORES cores",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args(argv)
    if not 1 <= args.low < args.high <= 64:
        parser.error("need 1 <= --low < --high <= 64")
    if not 1 <= args.rounds <= 200:
        parser.error("--rounds must be 1..200")
    return args


# --- one worker under test --------------------------------------------------------------


@dataclass
class Mode:
    name: str
    hostname: str
    queue: str
    long_poll: bool
    markers: Markers
    proc: subprocess.Popen | None = None
    raise_run: list[float | None] = field(default_factory=list)
    raise_ack: list[float | None] = field(default_factory=list)
    lower_ack: list[float | None] = field(default_factory=list)
    put_rtt: list[float] = field(default_factory=list)
    violations: int = 0
    notes: list[str] = field(default_factory=list)


def start_mode_worker(env: BenchEnv, mode: Mode, args: argparse.Namespace) -> None:
    mode.proc = start_worker(
        env, mode.hostname, mode.queue, args.low, args.heartbeat_interval, mode.long_poll
    )


class Control:
    """Sets concurrency through the API or the CLI and reads the worker rows back."""

    def __init__(self, env: BenchEnv, via: str) -> None:
        self.env = env
        self.via = via
        self.http = admin_client(env)
        self.cli_exit_lag: list[float] = []

    def close(self) -> None:
        self.http.close()

    def set(self, hostname: str, concurrency: int) -> tuple[int, float, float]:
        """Returns (desired_version, wall time sent, wall time returned)."""
        sent = time.time()
        if self.via == "api":
            response = self.http.put(
                f"/workers/{hostname}/concurrency", json={"concurrency": concurrency}
            )
            returned = time.time()
            response.raise_for_status()
            return desired_version(response.json(), hostname), sent, returned
        out = subprocess.run(
            [
                *edgefleet_cmd(),
                "set-worker-concurrency",
                "-H",
                hostname,
                "-c",
                str(concurrency),
                "-o",
                "json",
            ],
            env=self.env.environ(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        returned = time.time()
        if out.returncode != 0:
            raise RuntimeError(f"set-worker-concurrency failed: {out.stderr}")
        self.cli_exit_lag.append(returned - self.change_time(hostname, returned))
        # The CLI process exits well after the server committed (interpreter teardown), so
        # measure from the server's own stamp of the change instead (the audit row).
        return (
            desired_version(json.loads(out.stdout), hostname),
            sent,
            returned - self.cli_exit_lag[-1],
        )

    def change_time(self, hostname: str, default: float) -> float:
        """When the server recorded the latest change of ``hostname`` (its audit row)."""
        response = self.http.get("/audit", params={"edge_hostname": hostname})
        if response.status_code != 200 or not response.json():
            return default
        return wall(response.json()[-1]["at"])

    def worker(self, hostname: str) -> dict:
        response = self.http.get("/workers")
        response.raise_for_status()
        for row in response.json():
            if row["hostname"] == hostname:
                return row
        raise KeyError(hostname)

    def wait_ack(self, hostname: str, version: int, timeout: float) -> dict | None:
        def acked():
            row = self.worker(hostname)
            return row if row["applied_version"] >= version else None

        return wait_until(acked, timeout, interval=0.05)

    def submit(self, queue: str, command: list[str], count: int) -> None:
        for _ in range(count):
            self.http.post("/jobs", json={"command": command, "queue": queue}).raise_for_status()


def desired_version(body: dict, hostname: str) -> int:
    """The version to wait for, from a change set ({"versions": {...}}) or a single change."""
    if "versions" in body:
        return body["versions"][hostname]
    return body["desired_version"]


def wall(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# --- the measurement ----------------------------------------------------------------------


def raise_round(ctl: Control, mode: Mode, args: argparse.Namespace) -> None:
    before = mode.markers.running()
    if len(before) != args.low:
        mode.notes.append(f"raise: {len(before)} running before, expected {args.low}")
    seen = set(mode.markers.scan())
    version, sent, returned = ctl.set(mode.hostname, args.high)
    mode.put_rtt.append(returned - sent)
    need = args.high - len(before)

    def started():
        new = [v for j, v in mode.markers.scan().items() if j not in seen]
        return sorted(stamp for _, stamp in new) if len(new) >= need else None

    stamps = wait_until(started, args.timeout)
    mode.raise_run.append(stamps[need - 1] - returned if stamps else None)
    row = ctl.wait_ack(mode.hostname, version, args.timeout)
    mode.raise_ack.append(wall(row["applied_at"]) - returned if row else None)
    time.sleep(args.pause)  # let any (wrong) extra start show up
    running = mode.markers.running()
    if len(running) > args.high:
        mode.violations += len(running) - args.high


def lower_round(ctl: Control, mode: Mode, args: argparse.Namespace) -> None:
    version, sent, returned = ctl.set(mode.hostname, args.low)
    mode.put_rtt.append(returned - sent)
    row = ctl.wait_ack(mode.hostname, version, args.timeout)
    mode.lower_ack.append(wall(row["applied_at"]) - returned if row else None)
    # End the surplus jobs ourselves (newest first) and make sure none is replaced.
    running = sorted(mode.markers.running().items(), key=lambda kv: kv[1][1], reverse=True)
    seen = set(mode.markers.scan())
    for _, (pid, _) in running[: max(0, len(running) - args.low)]:
        if is_our_sleep(pid, args.job_seconds):
            os.kill(pid, signal.SIGKILL)

    def settled():
        row = ctl.worker(mode.hostname)
        return row if row["jobs_running"] <= args.low else None

    if wait_until(settled, args.timeout, interval=0.05) is None:
        mode.notes.append("lower: the worker did not report the killed jobs in time")
    time.sleep(args.pause)
    refills = [j for j in mode.markers.scan() if j not in seen]
    running_now = len(mode.markers.running())
    if refills and running_now > args.low:
        mode.violations += running_now - args.low


def wait_ready(ctl: Control, mode: Mode, args: argparse.Namespace) -> None:
    ok = wait_until(lambda: len(mode.markers.running()) >= args.low, 60, interval=0.05)
    if not ok:
        raise RuntimeError(f"worker {mode.hostname} never started {args.low} jobs")

    def converged():
        row = ctl.worker(mode.hostname)
        return row["converged"] and row["applied_concurrency"] == args.low

    if not wait_until(converged, 30, interval=0.1):
        raise RuntimeError(f"worker {mode.hostname} never acknowledged its first version")


def report(
    ctl: Control, modes: list[Mode], args: argparse.Namespace, cpu: float, busy: float
) -> None:
    base = next((m for m in modes if not m.long_poll), None)
    headers = ["mode", "n", "missed", "p50", "p95", "max", "mean", "p50 speedup"]

    def table(title: str, attr: str) -> None:
        rows = []
        for mode in modes:
            s = summarize(getattr(mode, attr))
            speed = "baseline"
            if base is not None and mode is not base:
                speed = fmt_ratio(s.p50, summarize(getattr(base, attr)).p50)
            rows.append(
                [mode.name, s.n, s.missed, *map(fmt_ms, (s.p50, s.p95, s.max, s.mean)), speed]
            )
        print_table(title, headers, rows)

    hb = args.heartbeat_interval
    print(f"\nserver code: {git_state()}")
    if args.server_env:
        print(f"server settings: {' '.join(args.server_env)}")
    print(f"\nconcurrency adoption: {args.rounds} rounds per mode, heartbeat every {hb:g} s,")
    if args.via == "api":
        print("set via the API; latencies from the PUT response (wall clock, same host)")
    else:
        lag = summarize(ctl.cli_exit_lag)
        print(
            "set via the CLI; latencies from the server's audit stamp of the change, because the"
            f" CLI exits {fmt_ms(lag.p50)} (p50) after it"
        )
    table(
        f"raise {args.low} -> {args.high}: set returned -> {args.high}th job process started",
        "raise_run",
    )
    table(
        f"raise {args.low} -> {args.high}: set returned -> acknowledged (applied_at)", "raise_ack"
    )
    table(
        f"lower {args.high} -> {args.low}: set returned -> acknowledged (applied_at)", "lower_ack"
    )
    rows = []
    for mode in modes:
        rtt = summarize(mode.put_rtt)
        rows.append([mode.name, fmt_ms(rtt.p50), fmt_ms(rtt.max), mode.violations, len(mode.notes)])
    print_table(
        "sanity: set call round trip, over-limit starts, anomalies",
        ["mode", "set p50", "set max", "over-limit", "anomalies"],
        rows,
    )
    for mode in modes:
        for note in mode.notes:
            print(f"  {mode.name}: {note}")
    print(
        f"  heartbeat-only can only be as fast as the next heartbeat: expect 0..{1.1 * hb:.2f} s"
        " (interval jittered +-10%) plus a round trip"
    )
    print(
        f"  server CPU during the rounds: {cpu * 100:.0f}% of one core; whole host busy:"
        f" {busy:.2f} of {os.cpu_count()} cores (other processes included)"
    )
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    install_signal_exit()
    wait_for_quiet_host(args.quiet_host)
    env = new_env(keep=args.keep)
    server = ServerProcess(env, extra_env=parse_server_env(args.server_env))
    wanted = [m.strip() for m in args.modes.split(",") if m.strip()]
    modes: list[Mode] = []
    for name in wanted:
        if name not in ("long-poll", "heartbeat-only"):
            raise SystemExit(f"unknown mode {name!r}")
        slug = "lp" if name == "long-poll" else "hb"
        marker_dir = env.home / "markers" / slug
        marker_dir.mkdir(parents=True)
        modes.append(
            Mode(name, f"bench-{slug}", f"q-{slug}", name == "long-poll", Markers(marker_dir))
        )
    ctl = None
    try:
        server.start()
        ctl = Control(env, args.via)
        depth = args.low + args.rounds * (args.high - args.low) + 4
        for mode in modes:
            ctl.submit(mode.queue, job_command(mode.markers.directory, args.job_seconds), depth)
            start_mode_worker(env, mode, args)
        for mode in modes:
            wait_ready(ctl, mode, args)
        time.sleep(1.0)
        meter = CpuMeter(server.pid).start()
        machine = MachineMeter().start()
        for i in range(args.rounds):
            order = modes if i % 2 == 0 else list(reversed(modes))
            for mode in order:
                if mode.proc is not None and mode.proc.poll() is not None:
                    raise RuntimeError(f"worker {mode.hostname} exited")
                raise_round(ctl, mode, args)
                time.sleep(args.pause)
                lower_round(ctl, mode, args)
                time.sleep(args.pause)
            print(f"round {i + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        cpu = meter.stop()
        busy = machine.stop()
        report(ctl, modes, args, cpu, busy)
        errors = server.error_lines()
        if errors:
            print(f"\nserver logged {len(errors)} error lines, e.g. {errors[0]}")
        return 0
    finally:
        for mode in modes:
            stop_worker(mode.proc, mode.markers, args.job_seconds)
        if ctl is not None:
            ctl.close()
        server.stop()
        env.cleanup()


def main() -> None:
    sys.exit(run(parse_args()))


if __name__ == "__main__":
    main()
