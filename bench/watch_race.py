"""Changes that land while a long-poll is (re)starting: delivered at once, or at the recheck?

Starts a real ``edgefleet server`` (fresh SQLite DB, random secret, loopback port), registers
one simulated worker and keeps exactly one ``watch`` open for it, re-issued the moment the
previous one answers. Then K changes (PUT concurrency), each after the previous one has been
delivered, in two modes, interleaved:

* ``back-to-back``: the PUT goes out the moment the previous change is delivered, i.e. while
  the worker is issuing its next watch (what a quick second change, or a busy operator
  script, does);
* ``settled`` (baseline): the PUT goes out ``--settle`` seconds later, once the new watch is
  certainly waiting.

Latency = PUT returned -> the watch answered with the new version (``time.monotonic()``, one
process). A change the server's wake-up missed is only seen by the watch's periodic re-read
(``EDGEFLEET_WATCH_RECHECK``, 5 s by default) or by the next change; the run gives up on one
after ``--give-up`` seconds and counts it as missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    LOOPBACK,
    SUMMARY_HEADERS,
    Conn,
    ServerProcess,
    async_admin_client,
    git_state,
    new_env,
    parse_server_env,
    print_table,
    summarize,
    summary_row,
)

from edgefleet.auth import Identity, mint_token  # noqa: E402
from edgefleet.contract import API_PREFIX  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--changes", "-k", type=int, default=200, help="changes per mode")
    parser.add_argument("--settle", type=float, default=0.05, help="s before a settled change")
    parser.add_argument("--give-up", type=float, default=6.0, help="s to wait for one change")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="EDGEFLEET_KEY=VALUE",
        help="a setting for the server only, e.g. EDGEFLEET_WATCH_RECHECK=30 (repeatable)",
    )
    args = parser.parse_args()
    if not 1 <= args.changes <= 5000 or not 0 < args.give_up <= 120:
        parser.error("--changes 1..5000, --give-up up to 120 s")
    return args


class Racer:
    """One simulated worker holding one watch, and the operator changing it."""

    def __init__(self, env) -> None:
        self.env = env
        self.name, self.instance = "racer", uuid.uuid4().hex
        token = mint_token(env.secret, Identity(subject=self.name, role="worker"), ttl=3600)
        self.headers = {"Authorization": f"Bearer {token}"}
        self.edge = f"{API_PREFIX}/edge/workers/{self.name}"
        self.version = 0
        self.seen: dict[int, float] = {}
        self.delivered = asyncio.Event()
        self.value = 2
        self.admin = async_admin_client(env)

    async def register(self) -> None:
        body = {
            "instance_id": self.instance,
            "concurrency": 2,
            "queues": ["q"],
            "heartbeat_interval": 30.0,
        }
        conn = Conn(LOOPBACK, self.env.port)
        status, answer = await conn.request("POST", f"{self.edge}/register", self.headers, body)
        conn.close()
        if status != 200:
            raise RuntimeError(f"register: HTTP {status}")
        self.version = json.loads(answer)["desired"]["version"]

    async def watcher(self) -> None:
        conn = Conn(LOOPBACK, self.env.port)
        while True:
            query = urlencode(
                {
                    "instance_id": self.instance,
                    "version": self.version,
                    "free_slots": 0,
                    "timeout": 30,
                }
            )
            status, body = await conn.request(
                "GET", f"{self.edge}/watch?{query}", self.headers, None, 90
            )
            if status != 200:
                await asyncio.sleep(0.5)
                continue
            new = json.loads(body)["desired"]["version"]
            if new > self.version:
                self.version = new
                self.seen[new] = time.monotonic()
                self.delivered.set()

    async def change(self) -> tuple[int, float]:
        self.value = 5 - self.value  # 3, 2, 3, ...: every PUT is a change
        response = await self.admin.put(
            f"/workers/{self.name}/concurrency", json={"concurrency": self.value}
        )
        return response.json()["versions"][self.name], time.monotonic()

    async def one(self, give_up: float) -> float | None:
        self.delivered.clear()
        target, returned = await self.change()
        deadline = returned + give_up
        while target not in self.seen and time.monotonic() < deadline:
            self.delivered.clear()
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    await self.delivered.wait()
            except TimeoutError:
                break
        if target in self.seen:
            return self.seen[target] - returned
        await self.change()  # unstick the watch for the next sample
        while self.version < target + 1:
            await asyncio.sleep(0.01)
        return None


async def amain(args: argparse.Namespace) -> None:
    env = new_env()
    server = ServerProcess(env, extra_env=parse_server_env(args.server_env))
    try:
        await asyncio.to_thread(server.start)
        racer = Racer(env)
        await racer.register()
        task = asyncio.create_task(racer.watcher())
        results: dict[str, list[float | None]] = {"back-to-back": [], "settled": []}
        for i in range(2 * args.changes):
            mode = "back-to-back" if i % 2 == 0 else "settled"
            if mode == "settled":
                await asyncio.sleep(args.settle)
            results[mode].append(await racer.one(args.give_up))
        task.cancel()
        await racer.admin.aclose()
        print(f"\nwatch race: {args.changes} changes per mode; code: {git_state()}")
        if args.server_env:
            print(f"server settings: {' '.join(args.server_env)}")
        rows = []
        for mode, lat in results.items():
            slow = sum(1 for x in lat if x is None or x > 1.0)
            rows.append(summary_row(mode, summarize(lat), f"{slow} ({100 * slow / len(lat):.1f}%)"))
        print_table(
            f"PUT returned -> watch answered (missed: not delivered within {args.give_up:g} s)",
            [*SUMMARY_HEADERS, "> 1 s or missed"],
            rows,
        )
    finally:
        await asyncio.to_thread(server.stop)
        env.cleanup()


def main() -> None:
    asyncio.run(amain(parse_args()))


if __name__ == "__main__":
    main()
