"""How long after a replica is killed (SIGKILL) its workers first talk to the other one.

Two ``edgefleet server`` replicas on one PostgreSQL database (a throwaway cluster, or
``--pg-url``), and ``--workers`` real ``edgefleet worker`` processes given both
(``--api-url A,B``), idle, holding their long-polls, heartbeating every
``--heartbeat-interval`` seconds (30 by default, as in production: the failover must not wait
for a heartbeat). Each round kills the replica the workers use, measures for each worker the
time from the kill (the benchmark's ``time.time()``) to its first successful call on the other
replica (``last_contact`` in the worker's state file, once its ``api_url`` names the other
replica), then restarts the killed replica for the next round, which kills the other one.

    .venv/bin/python bench/failover.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ServerProcess,
    fmt_ms,
    install_signal_exit,
    new_env,
    print_table,
    start_worker,
    stop_worker,
    summarize,
    wait_until,
)
from scale import Deployment, PgCluster, create_database  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--heartbeat-interval", type=float, default=30.0)
    parser.add_argument("--pg-url", default=os.environ.get("EDGEFLEET_TEST_PG_URL", ""))
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 50 or not 1 <= args.workers <= 50:
        parser.error("--rounds and --workers must be within 1..50")
    return args


def contact(home: Path, hostname: str) -> tuple[str | None, float | None]:
    """The worker's current server and its last successful call (POSIX seconds)."""
    try:
        state = json.loads((home / "workers" / f"{hostname}.json").read_text())
    except (OSError, ValueError):
        return None, None
    last = state.get("last_contact")
    return state.get("api_url"), datetime.fromisoformat(last).timestamp() if last else None


def kill(server: ServerProcess) -> float:
    """SIGKILL the replica's process group; returns when it happened."""
    os.killpg(server.pid, signal.SIGKILL)
    at = time.time()
    server.proc.wait(10)
    return at


def one_round(dep: Deployment, hostnames: list[str], victim: int) -> list[float]:
    """Kill replica ``victim``; the seconds each worker took to reach the other one."""
    home, urls = dep.env.home, [s.env.api_url for s in dep.servers]
    ready = wait_until(
        lambda: all(contact(home, h)[0] == urls[victim] for h in hostnames), timeout=60
    )
    if not ready:
        raise SystemExit(f"the workers are not all on {urls[victim]}: {_where(home, hostnames)}")
    killed_at = kill(dep.servers[victim])
    other = urls[1 - victim]

    def moved() -> list[float] | None:
        seen = [contact(home, h) for h in hostnames]
        if all(url == other and last is not None and last >= killed_at for url, last in seen):
            return [last - killed_at for _, last in seen]
        return None

    delays = wait_until(moved, timeout=60)
    if delays is None:
        raise SystemExit(f"not every worker reached {other} within 60 s: {_where(home, hostnames)}")
    dep.servers[victim].stop()  # closes its log; the process is gone already
    dep.servers[victim].start()  # back for the next round
    return delays


def _where(home: Path, hostnames: list[str]) -> dict[str, tuple[str | None, float | None]]:
    return {h: contact(home, h) for h in hostnames}


def main() -> None:
    install_signal_exit()
    args = parse_args()
    env = new_env(keep=args.keep)
    pg = None if args.pg_url else PgCluster(keep=args.keep).start()
    pg_url = args.pg_url or pg.url
    dep = Deployment("postgres", env, create_database(pg_url, f"failover_{uuid.uuid4().hex[:6]}"))
    workers = []
    try:
        dep.start(2)
        urls = ",".join(s.env.api_url for s in dep.servers)
        hostnames = [f"fo-{n}" for n in range(args.workers)]
        extra = ("--api-url", urls)
        workers = [
            start_worker(env, h, "default", 1, args.heartbeat_interval, extra=extra)
            for h in hostnames
        ]
        rows = []
        for round_ in range(args.rounds):
            delays = one_round(dep, hostnames, victim=round_ % 2)
            summary = summarize(delays)
            rows.append([round_ + 1, fmt_ms(summary.p50), fmt_ms(summary.max)])
            print(f"round {round_ + 1}: {', '.join(fmt_ms(d) for d in delays)}", flush=True)
        print_table(
            f"kill -9 of a replica -> each worker's first successful call on the other "
            f"({args.workers} workers, heartbeat every {args.heartbeat_interval:g}s)",
            ["round", "median", "slowest"],
            rows,
        )
    finally:
        for proc in workers:
            stop_worker(proc, None, 0)
        dep.stop()
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
