"""Heartbeats/s with per-worker credentials against tokens signed with the shared secret.

One ``edgefleet server`` (SQLite, or ``--pg-url``) and two fleets of simulated workers on it:
``secret`` workers sign JWTs with the shared secret as before, ``credential`` workers each
enrolled with a join token and send their own opaque credential (looked up once, then
remembered by the server). The heartbeat phase of ``scale.py`` (closed-loop probe, then
open-loop steps; the figure is the highest rate with p99 under ``--hb-p99``) runs for each,
alternating ``--rounds`` times in ABBA order so drift of the machine hits both alike; each
figure is the median of its rounds. Passes if the credential figure is within 10 % of the
secret one.

    .venv/bin/python bench/credentials.py            # ~5 minutes
    .venv/bin/python bench/credentials.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from statistics import median

import httpx
from _common import admin_auth, git_state, install_signal_exit, new_env, run_async, verdict
from scale import (
    Deployment,
    Pools,
    SimWorker,
    _defaults,
    create_database,
    fmt_ms,
    measure_heartbeats,
    register_all,
    sim_workers,
)

#: The most the credential figure may fall below the secret one.
TOLERANCE = 0.10


class Credential:
    """A simulated worker's signer that sends its own credential, as the real worker does."""

    def __init__(self, credential: str) -> None:
        self.credential = credential

    def token(self) -> str:
        return self.credential


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short steps, few workers")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two")
    parser.add_argument("--hb-workers", type=int, help="workers per fleet")
    parser.add_argument("--hb-seconds", type=float, help="seconds per step")
    parser.add_argument("--hb-p99", type=float, default=0.100, help="p99 bound (s)")
    parser.add_argument("--pg-url", help="a PostgreSQL server to use instead of SQLite")
    args = parser.parse_args()
    args.fleet_sizes = args.fleet_window = args.jobs = args.ceiling_seconds = None
    _defaults(args)
    return args


async def enroll_all(dep: Deployment, count: int) -> list[SimWorker]:
    """``count`` workers enrolled with one join token, each with its own credential."""
    base = f"{dep.servers[0].env.api_url}/api/v1"
    async with httpx.AsyncClient(base_url=base, auth=admin_auth(dep.env.secret)) as admin:
        response = await admin.post("/tokens/join", json={"uses": count, "ttl_seconds": 3600})
        response.raise_for_status()
        join = response.json()["token"]
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        headers = {"Authorization": f"Bearer {join}"}

        async def one(name: str) -> SimWorker:
            answer = await client.post("/edge/enroll", json={"hostname": name}, headers=headers)
            answer.raise_for_status()
            return SimWorker(name, Credential(answer.json()["credential"]))

        names = [f"cred{i:05d}" for i in range(count)]
        workers: list[SimWorker] = []
        for start in range(0, count, 50):
            workers += await asyncio.gather(*(one(n) for n in names[start : start + 50]))
    return workers


async def amain(args: argparse.Namespace) -> None:
    env = new_env()
    if args.pg_url:
        db_url = create_database(args.pg_url, f"credentials_{uuid.uuid4().hex[:6]}")
        backend = "postgres"
    else:
        db_url = f"sqlite:///{env.home}/edgefleet.db"
        backend = "sqlite"
    dep = Deployment(backend, env, db_url)
    figures: dict[str, list[float]] = {"secret": [], "credential": []}
    try:
        await asyncio.to_thread(dep.start, 1)
        pools = Pools(dep.ports)
        fleets = {
            "secret": sim_workers(env.secret, "hb", args.hb_workers),
            "credential": await enroll_all(dep, args.hb_workers),
        }
        for workers in fleets.values():
            await register_all(pools, workers, "hb", 2, 10.0)
        pools.close()
        for round_ in range(args.rounds):
            order = list(fleets.items())
            if round_ % 2:  # ABBA: neither always goes first
                order.reverse()
            for kind, workers in order:
                result = await measure_heartbeats(dep, args, lambda *_: None, workers)
                best = result.best.rate if result.best else 0.0
                p99 = fmt_ms(result.best.lat.p99) if result.best else "-"
                print(f"round {round_ + 1} {kind:10}: {best:7.0f} heartbeats/s (p99 {p99})")
                figures[kind].append(best)
    finally:
        await asyncio.to_thread(dep.stop)
    secret, credential = median(figures["secret"]), median(figures["credential"])
    ratio = credential / secret if secret else float("nan")
    print(f"\ncode: {git_state()}; {backend}; {args.hb_workers} workers per fleet")
    print(f"heartbeats/s at p99 < {fmt_ms(args.hb_p99)}, median of {args.rounds} rounds:")
    print(f"  shared-secret JWTs        {secret:7.0f}/s")
    print(f"  per-worker credentials    {credential:7.0f}/s  ({ratio:.2f} of the above)")
    print(f"within {TOLERANCE:.0%}: {verdict(ratio >= 1 - TOLERANCE)}")


def main() -> None:
    install_signal_exit()
    run_async(amain(parse_args()))


if __name__ == "__main__":
    main()
