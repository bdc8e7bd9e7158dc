"""How long after a ``kill -9`` of a worker its running jobs are queued again, and done.

Starts a real ``edgefleet server`` (fresh SQLite DB, random secret, loopback port, the
offline timeout given by ``--offline-timeout``), then for each round:

1. a "victim" worker (``--heartbeat-interval``, concurrency ``--jobs``) on a queue of its own
   takes ``--jobs`` jobs that run for ever as attempt 1 (and exit at once as attempt 2), each
   allowed one retry;
2. once all of them run, the victim gets SIGKILL (no clean-up at all; its jobs die with it);
3. a "rescuer" worker on the same queue is started straight away.

It reports, from the kill (the benchmark's ``time.time()``): when the server re-queued each
job (the ``lost`` event of its history, stamped by the server) and when it succeeded on the
rescuer; and it checks that no job was lost (all ``success``) or run twice (one
``succeeded`` event each, attempt 2, on the rescuer). Expect the re-queue a little after the
victim's allowed silence, ``min(offline timeout, max(10, 5 x heartbeat interval))``: the last
heartbeat came up to one interval before the kill, and the sweep runs every
``min(5, offline_timeout / 5)`` seconds.

    .venv/bin/python bench/requeue_after_kill.py --offline-timeout 10 --rounds 3
    .venv/bin/python bench/requeue_after_kill.py --offline-timeout 150 --heartbeat-interval 2
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ServerProcess,
    admin_client,
    install_signal_exit,
    new_env,
    print_table,
    start_worker,
    stop_worker,
    summarize,
    wait_until,
)

from edgefleet.server.services.liveness import allowed_silence  # noqa: E402

RUN_FOR_EVER_THEN_EXIT = 'if [ "$EDGEFLEET_JOB_ATTEMPT" = 1 ]; then exec sleep 3600; fi'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--offline-timeout", type=float, default=10.0)
    parser.add_argument("--heartbeat-interval", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=4, help="jobs running on the victim")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args(argv)
    if not 0.5 <= args.offline_timeout <= 600:
        parser.error("--offline-timeout must be 0.5..600 seconds")
    if not 1 <= args.jobs <= 64 or not 1 <= args.rounds <= 50:
        parser.error("--jobs must be 1..64 and --rounds 1..50")
    return args


def wall(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def one_round(env, http, args, n: int) -> tuple[list[float], list[float], list[str]]:
    queue, victim_name, rescuer_name = f"q{n}", f"victim-{n}", f"rescuer-{n}"
    problems: list[str] = []
    victim = start_worker(env, victim_name, queue, args.jobs, args.heartbeat_interval)
    rescuer = None
    try:
        wait_until(lambda: _registered(http, victim_name), timeout=60)
        body = {
            "command": ["sh", "-c", RUN_FOR_EVER_THEN_EXIT],
            "queue": queue,
            "retries": 1,
            "retry_delay": 0,
        }
        ids = [http.post("/jobs", json=body).json()["id"] for _ in range(args.jobs)]

        def all_running() -> bool:
            return all(http.get(f"/jobs/{i}").json()["state"] == "running" for i in ids)

        wait_until(all_running, timeout=60)
        time.sleep(args.heartbeat_interval * 1.5)  # the job processes are surely started
        killed_at = time.time()
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        rescuer = start_worker(env, rescuer_name, queue, args.jobs, args.heartbeat_interval)

        def finished() -> list[dict] | None:
            views = [http.get(f"/jobs/{i}").json() for i in ids]
            done = all(v["state"] in ("success", "failed", "cancelled") for v in views)
            return views if done else None

        views = wait_until(finished, timeout=args.offline_timeout * 4 + 60)
        requeued, done = [], []
        for view in views:
            events = [e["event"] for e in view["history"]]
            lost = next(e for e in view["history"] if e["event"] == "lost")
            requeued.append(wall(lost["at"]) - killed_at)
            done.append(wall(view["finished_at"]) - killed_at)
            if view["state"] != "success":
                problems.append(f"job {view['id']} lost: {view['state']} ({view['reason']})")
            if events.count("succeeded") != 1 or (view["attempt"], view["worker"]) != (
                2,
                rescuer_name,
            ):
                problems.append(f"job {view['id']} recorded oddly: {events}")
        return requeued, done, problems
    finally:
        stop_worker(rescuer, None, 0)
        stop_worker(victim, None, 0)


def _registered(http, hostname: str) -> bool:
    rows = http.get("/workers").json()
    return any(r["hostname"] == hostname and r["applied_concurrency"] for r in rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_exit()
    env = new_env(keep=args.keep)
    server = ServerProcess(
        env, extra_env={"EDGEFLEET_WORKER_OFFLINE_TIMEOUT": str(args.offline_timeout)}
    )
    requeued: list[float] = []
    done: list[float] = []
    problems: list[str] = []
    try:
        server.start()
        with admin_client(env) as http:
            for n in range(1, args.rounds + 1):
                r, d, p = one_round(env, http, args, n)
                requeued += r
                done += d
                problems += p
                print(f"round {n}: re-queued {min(r):.2f}-{max(r):.2f}s after the kill")
    finally:
        server.stop()
        env.cleanup()
    rows = []
    for label, values in (("re-queued (lost event)", requeued), ("done on the rescuer", done)):
        s = summarize(values)
        rows.append([label, s.n, f"{s.p50:.2f} s", f"{s.max:.2f} s", f"{min(values):.2f} s"])
    allowed = allowed_silence(args.heartbeat_interval, args.offline_timeout)
    print_table(
        f"after kill -9 (offline timeout {args.offline_timeout:g}s, heartbeat "
        f"{args.heartbeat_interval:g}s: offline after {allowed:g}s of silence; "
        f"{args.jobs} jobs x {args.rounds} rounds)",
        ["", "jobs", "p50", "max", "min"],
        rows,
    )
    lost = sum(1 for p in problems if " lost: " in p)
    print(f"\njobs lost: {lost}, recorded oddly / twice: {len(problems) - lost}")
    for problem in problems:
        print(f"  {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
