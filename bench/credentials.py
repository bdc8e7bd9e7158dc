"""Heartbeats/s with per-worker credentials against tokens signed with the shared secret.

One ``edgefleet server`` (SQLite) and two fleets of simulated workers on it: ``secret``
workers sign JWTs with the shared secret, ``credential`` workers each enrolled with a join
token and send their own opaque credential (looked up once, then remembered by the server).
The heartbeat phase of ``scale.py`` runs for each, alternating ``--rounds`` times in ABBA
order so drift of the machine hits both alike; each figure is the median of its rounds.
Passes if the credential figure is within 10 % of the secret one.

    .venv/bin/python bench/credentials.py            # ~5 minutes
    .venv/bin/python bench/credentials.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
from statistics import median

from _common import Bench, fmt_ms, git_state, install_signal_exit, verdict
from _sim import Pools, SimWorker, admin_headers, for_all, register_all, run_async, sim_workers
from scale import HB_P99, Deployment, defaults, measure_heartbeats

from edgefleet.contract import API_PREFIX

TOLERANCE = 0.10  # the most the credential figure may fall below the secret one


class Credential:
    """A signer that sends the worker's own credential, as the real worker does."""

    def __init__(self, credential: str) -> None:
        self.credential = credential

    def token(self) -> str:
        return self.credential


async def enroll_all(pools: Pools, secret: str, count: int) -> list[SimWorker]:
    """``count`` workers enrolled with one join token, each with its own credential."""
    body = {"uses": count, "ttl_seconds": 3600}
    request = ("POST", f"{API_PREFIX}/tokens/join", admin_headers(secret), body)
    (answer,) = await for_all(pools, [request], 1)
    headers = {"Authorization": f"Bearer {SimWorker('', None).apply(answer)['token']}"}
    names = [f"cred{i:05d}" for i in range(count)]
    path = f"{API_PREFIX}/edge/enroll"
    answers = await for_all(pools, [("POST", path, headers, {"hostname": n}) for n in names])
    credentials = [SimWorker("", None).apply(a)["credential"] for a in answers]
    return [SimWorker(n, Credential(c)) for n, c in zip(names, credentials, strict=True)]


async def amain(args: argparse.Namespace) -> None:
    figures: dict[str, list[float]] = {"secret": [], "credential": []}
    with Bench() as bench:
        bench.start_server()
        dep = Deployment("sqlite", bench, "")
        pools = Pools(dep.ports)
        fleets = {
            "secret": sim_workers(bench.secret, "hb", args.hb_workers),
            "credential": await enroll_all(pools, bench.secret, args.hb_workers),
        }
        for workers in fleets.values():
            await register_all(pools, workers, "hb", 2, 10.0)
        pools.close()
        for round_ in range(args.rounds):
            order = list(fleets.items())[:: -1 if round_ % 2 else 1]  # ABBA
            for kind, workers in order:
                best = await measure_heartbeats(dep, args, workers)
                rate, p99 = (best.rate, fmt_ms(best.lat.p99)) if best else (0.0, "-")
                print(f"round {round_ + 1} {kind:10}: {rate:7.0f} heartbeats/s (p99 {p99})")
                figures[kind].append(rate)
    secret, credential = median(figures["secret"]), median(figures["credential"])
    ratio = credential / secret if secret else float("nan")
    print(f"\ncode: {git_state()}; sqlite; {args.hb_workers} workers per fleet")
    print(f"heartbeats/s at p99 < {fmt_ms(HB_P99)}, median of {args.rounds} rounds:")
    print(f"  shared-secret JWTs        {secret:7.0f}/s")
    print(f"  per-worker credentials    {credential:7.0f}/s  ({ratio:.2f} of the above)")
    print(f"within {TOLERANCE:.0%}: {verdict(ratio >= 1 - TOLERANCE)}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short steps, few workers")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two")
    args = parser.parse_args()
    defaults(args)
    args.rounds = 1 if args.quick else args.rounds
    return args


if __name__ == "__main__":
    install_signal_exit()
    run_async(amain(parse_args()))
