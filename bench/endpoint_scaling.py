"""Throughput and latency of single worker-API endpoints as concurrent callers grow.

One real ``edgefleet server`` (fresh SQLite database) with ``--workers`` registered workers;
for each endpoint and each caller count a closed loop of that many callers runs for
``--seconds`` s (each request as another worker). Concurrency 1 is each endpoint's baseline,
measured in the same run; ``health`` (no database) is the HTTP stack's own.

Endpoints, all ``async`` routes: ``health``; ``heartbeat`` (grouped with the others that
arrive together into one write transaction); ``fetch`` (a write transaction and the claim
query, nothing queued); ``watch`` (``timeout`` 0.001 s, so it answers after one look at the
database: what each held long-poll costs the server per re-check).

A healthy server keeps its throughput as callers grow and its latency grows linearly
(queueing); throughput falling with more callers points at contention.

    .venv/bin/python bench/endpoint_scaling.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio

from _common import Bench, fmt_ms, git_state, install_signal_exit, print_table
from _sim import Pools, Request, closed_loop, register_all, run_async, sim_workers

from edgefleet.contract import API_PREFIX

ENDPOINTS = {
    "health": lambda w: ("GET", f"{API_PREFIX}/health", {}, None),
    "heartbeat": lambda w: w.heartbeat(),
    "fetch": lambda w: w.fetch(2),
    "watch": lambda w: w.watch(2, 0.001),
}


async def amain(args: argparse.Namespace) -> None:
    with Bench() as bench:
        server = bench.start_server()
        pools = Pools([int(server.url.rsplit(":", 1)[1])])
        workers = sim_workers(bench.secret, "w", args.workers)
        await register_all(pools, workers, "default")
        rows = []
        for endpoint, make in ENDPOINTS.items():
            base = None
            for callers in args.levels:

                def request(i: int, make=make) -> Request:
                    return make(workers[i % len(workers)])

                out = await closed_loop(pools, request, callers, args.seconds)
                base = base or out.rate
                rows.append([endpoint, callers, f"{out.rate:.0f}/s", f"{out.rate / base:.2f}x",
                             fmt_ms(out.lat.p50), fmt_ms(out.lat.p99), out.failed])  # fmt: skip
                await asyncio.sleep(1.0)
        pools.close()
    print(f"\nendpoint scaling: {args.workers} workers registered; code: {git_state()}")
    print_table(
        "closed loop, N callers (rate against N=1 of the same endpoint)",
        ["endpoint", "N", "rate", "vs N=1", "p50", "p99", "failed"],
        rows,
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--workers", type=int, default=1000, help="registered workers")
    parser.add_argument("--concurrency", default="1,10,40,160", help="caller counts to try")
    parser.add_argument("--seconds", type=float, default=5.0, help="per endpoint and level")
    parser.add_argument("--quick", action="store_true", help="100 workers, 1 s per level")
    args = parser.parse_args()
    if args.quick:
        args.workers, args.seconds = 100, 1.0
    args.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    return args


if __name__ == "__main__":
    install_signal_exit()
    run_async(amain(parse_args()))
