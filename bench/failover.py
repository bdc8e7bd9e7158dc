"""How long after a replica is killed (SIGKILL) its workers first talk to the other one.

Two servers on one PostgreSQL database, idle real workers given both; each round kills the
replica they use (then restarts it): per worker, the kill -> its first successful call on the
other (``last_contact`` in its state file).

    .venv/bin/python bench/failover.py [--rounds 5] [--workers 4] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from datetime import datetime
from pathlib import Path

from _common import Bench, fmt_ms, postgres_server, print_table, summarize

from support import fresh_database, wait_until

HEARTBEAT = 30.0  # the failover must not wait for a heartbeat


def contact(home: Path, hostname: str) -> tuple[str | None, float | None]:
    """The worker's current server and its last successful call (POSIX seconds)."""
    with contextlib.suppress(OSError, ValueError):
        state = json.loads((home / "workers" / f"{hostname}.json").read_text())
        last = state.get("last_contact")
        return state.get("api_url"), datetime.fromisoformat(last).timestamp() if last else None
    return None, None


def one_round(bench: Bench, hostnames: list[str], victim: int) -> list[float]:
    """Kill replica ``victim``; the seconds each worker took to reach the other one."""
    urls = [s.url for s in bench.servers]

    def where() -> dict[str, tuple[str | None, float | None]]:
        return {h: contact(bench.home, h) for h in hostnames}

    wait_until(
        lambda: all(url == urls[victim] for url, _ in where().values()),
        timeout=60,
        message=lambda: f"the workers are not all on {urls[victim]}: {where()}",
    )
    killed_at = time.time()
    bench.servers[victim].kill()  # SIGKILL, back once it is gone
    other = urls[1 - victim]

    def moved() -> list[float] | None:
        seen = list(where().values())
        if all(url == other and last is not None and last >= killed_at for url, last in seen):
            return [last - killed_at for _, last in seen]
        return None

    delays = wait_until(moved, timeout=60, message=lambda: f"not all on {other}: {where()}")
    bench.restart_server(victim)  # back for the next round
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="2 rounds, 2 workers")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.workers = 2, 2
    with contextlib.ExitStack() as stack:
        pg_url = stack.enter_context(postgres_server())
        db_url = stack.enter_context(fresh_database(Path("."), server_url=pg_url))
        bench = stack.enter_context(Bench())
        for _ in range(2):
            bench.start_server(db_url)
        urls = ",".join(s.url for s in bench.servers)
        hostnames = [f"fo-{n}" for n in range(args.workers)]
        flags = ["-c", "1", "--heartbeat-interval", str(HEARTBEAT), "--api-url", urls]
        for hostname in hostnames:
            bench.start_worker(hostname, *flags)
        rows = []
        for round_ in range(args.rounds):
            delays = one_round(bench, hostnames, victim=round_ % 2)
            summary = summarize(delays)
            rows.append([round_ + 1, fmt_ms(summary.p50), fmt_ms(summary.max)])
            print(f"round {round_ + 1}: {', '.join(fmt_ms(d) for d in delays)}", flush=True)
    print_table(
        f"kill -9 of a replica -> each worker's first successful call on the other "
        f"({args.workers} workers, heartbeat every {HEARTBEAT:g}s)",
        ["round", "median", "slowest"],
        rows,
    )


if __name__ == "__main__":
    main()
