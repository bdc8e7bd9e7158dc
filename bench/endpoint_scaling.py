"""Throughput and latency of single worker-API endpoints as concurrent callers grow.

Starts a real ``edgefleet server`` (fresh SQLite DB, random secret, loopback port),
registers ``--workers`` workers, then for each endpoint and each concurrency level runs a
closed loop of that many callers for ``--seconds`` seconds (each caller: send, wait for the
answer, send again, as a different worker each time) and reports requests per second and
latency percentiles. Concurrency 1 is the baseline of each endpoint, measured in the same
run; ``health`` (no database) is the baseline for the HTTP stack itself.

Endpoints: ``health`` (GET, async, no DB), ``heartbeat`` (POST, sync, one write
transaction), ``fetch`` (POST, sync, write transaction + claim query, nothing queued),
``watch`` (GET, async; ``timeout`` 0.001 s so it answers after one round of its database
re-reads: what every waiting long-poll costs the server each ``watch_recheck`` seconds).

A healthy server keeps its throughput as callers grow and its latency grows linearly
(queueing); a collapse, throughput falling with more callers, points at contention.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    LOOPBACK,
    Conn,
    CpuMeter,
    HttpError,
    MachineMeter,
    ServerProcess,
    fmt_ms,
    git_state,
    new_env,
    parse_server_env,
    print_table,
    raise_nofile,
    run_async,
    summarize,
)

from edgefleet.auth import Identity, mint_token  # noqa: E402
from edgefleet.contract import API_PREFIX  # noqa: E402

ENDPOINTS = ("health", "heartbeat", "fetch", "watch")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--workers", type=int, default=1000, help="registered workers")
    parser.add_argument("--concurrency", default="1,10,40,160", help="caller counts to try")
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS))
    parser.add_argument("--seconds", type=float, default=5.0, help="per endpoint and level")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="EDGEFLEET_KEY=VALUE",
        help="a setting for the server only (repeatable)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args()
    args.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.endpoint_list = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    if not args.levels or any(not 1 <= c <= 2000 for c in args.levels):
        parser.error("--concurrency: comma-separated counts, 1..2000")
    if unknown := set(args.endpoint_list) - set(ENDPOINTS):
        parser.error(f"unknown endpoints {sorted(unknown)}")
    if not (1 <= args.workers <= 10000 and 0 < args.seconds <= 120):
        parser.error("--workers 1..10000, --seconds up to 120")
    return args


class Caller:
    """Closed-loop callers, one keep-alive connection each (see ``_common.Conn``)."""

    def __init__(self, env, workers: list[tuple[str, str]]) -> None:
        self.env = env
        self.workers = workers
        self.tokens = {
            name: mint_token(env.secret, Identity(subject=name, role="worker"), ttl=3600)
            for name, _ in workers
        }
        self.seq: dict[str, int] = {}

    def request(self, endpoint: str, i: int) -> tuple[str, str, dict, dict | None]:
        """(method, path, headers, JSON body) of request number ``i`` to ``endpoint``."""
        name, instance = self.workers[i % len(self.workers)]
        headers = {"Authorization": f"Bearer {self.tokens[name]}"}
        edge = f"{API_PREFIX}/edge/workers/{name}"
        if endpoint == "health":
            return "GET", f"{API_PREFIX}/health", {}, None
        if endpoint == "heartbeat":
            body = {
                "instance_id": instance,
                "state": "idle",
                "applied_version": 1,
                "applied_concurrency": 2,
            }
            return "POST", f"{edge}/heartbeat", headers, body
        if endpoint == "fetch":
            seq = self.seq[name] = self.seq.get(name, 0) + 1
            body = {"instance_id": instance, "free_slots": 2, "seq": seq}
            return "POST", f"{edge}/fetch", headers, body
        params = {"instance_id": instance, "version": 1, "free_slots": 2, "timeout": 0.001}
        return "GET", f"{edge}/watch?{urlencode(params)}", headers, None

    async def register(self) -> None:
        sem = asyncio.Semaphore(20)

        async def one(name: str, instance: str) -> None:
            body = {
                "instance_id": instance,
                "concurrency": 2,
                "queues": ["default"],
                "heartbeat_interval": 30.0,
            }
            headers = {"Authorization": f"Bearer {self.tokens[name]}"}
            path = f"{API_PREFIX}/edge/workers/{name}/register"
            async with sem:
                conn = Conn(LOOPBACK, self.env.port)
                try:
                    status, answer = await conn.request("POST", path, headers, body)
                finally:
                    conn.close()
            if status != 200:
                raise RuntimeError(f"register {name}: HTTP {status} {answer[:200]!r}")

        await asyncio.gather(*(one(n, i) for n, i in self.workers))

    async def level(self, endpoint: str, callers: int, seconds: float, pid: int) -> dict:
        latencies: list[float] = []
        errors = 0
        counter = 0
        stop = time.monotonic() + seconds

        async def loop() -> None:
            nonlocal errors, counter
            conn = Conn(LOOPBACK, self.env.port)
            while time.monotonic() < stop:
                counter += 1
                method, path, headers, body = self.request(endpoint, counter)
                t0 = time.monotonic()
                try:
                    status, _ = await conn.request(method, path, headers, body)
                    ok = status < 400
                except HttpError:
                    ok = False
                if ok:
                    latencies.append(time.monotonic() - t0)
                else:
                    errors += 1
            conn.close()

        server, client = CpuMeter(pid).start(), CpuMeter(os.getpid()).start()
        machine = MachineMeter().start()
        t0 = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(callers)))
        elapsed = time.monotonic() - t0
        return {
            "rate": len(latencies) / elapsed,
            "lat": summarize(latencies),
            "errors": errors,
            "server": server.stop(),
            "client": client.stop(),
            "machine": machine.stop(),
        }


async def amain(args: argparse.Namespace) -> None:
    raise_nofile(65536)
    env = new_env(keep=args.keep)
    server = ServerProcess(env, extra_env=parse_server_env(args.server_env))
    try:
        server.start()
        workers = [(f"w{i:05d}", uuid.uuid4().hex) for i in range(args.workers)]
        caller = Caller(env, workers)
        await caller.register()
        rows = []
        for endpoint in args.endpoint_list:
            base = None
            for callers in args.levels:
                print(f"-- {endpoint} x{callers}", file=sys.stderr, flush=True)
                res = await caller.level(endpoint, callers, args.seconds, server.pid)
                base = base or res["rate"]
                s = res["lat"]
                others = res["machine"] - res["server"] - res["client"]
                rows.append(
                    [
                        endpoint,
                        callers,
                        f"{res['rate']:.0f}/s",
                        f"{res['rate'] / base:.2f}x" if base else "-",
                        fmt_ms(s.p50),
                        fmt_ms(s.p99),
                        fmt_ms(s.max),
                        res["errors"],
                        f"{res['server'] * 100:.0f}%",
                        f"{res['client'] * 100:.0f}%",
                        f"{max(0.0, others):.2f}",
                    ]
                )
                await asyncio.sleep(1.0)
        print(f"\nendpoint scaling: {args.workers} workers registered; code: {git_state()}")
        if args.server_env:
            print(f"server settings: {' '.join(args.server_env)}")
        print_table(
            "closed loop, N callers (rate vs N=1 of the same endpoint; srv CPU: share of one"
            " core; client: this process; others: cores used by other processes)",
            [
                "endpoint",
                "N",
                "rate",
                "vs N=1",
                "p50",
                "p99",
                "max",
                "errors",
                "srv CPU",
                "client CPU",
                "others",
            ],
            rows,
        )
    finally:
        await asyncio.to_thread(server.stop)
        env.cleanup()


def main() -> None:
    args = parse_args()
    run_async(amain(args))


if __name__ == "__main__":
    main()
