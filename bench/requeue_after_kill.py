"""How long after a ``kill -9`` of a worker its running jobs are queued again, and done.

One server (SQLite, ``--offline-timeout``); each round a victim worker takes ``--jobs`` jobs
that run for ever as attempt 1 (and exit at once as attempt 2), is killed once they all run,
and a rescuer on the same queue starts. From the kill it reports when the server re-queued
each job (its ``lost`` event) and when it succeeded on the rescuer, and counts jobs lost or
recorded twice. Expect the re-queue a little after the allowed silence,
``min(offline timeout, max(10, 5 x heartbeat interval))``, plus up to one sweep interval.

    .venv/bin/python bench/requeue_after_kill.py --offline-timeout 10 --rounds 3
    .venv/bin/python bench/requeue_after_kill.py --offline-timeout 150 --heartbeat-interval 2
    .venv/bin/python bench/requeue_after_kill.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import Bench, install_signal_exit, print_table, summarize

from edgefleet.server.services.liveness import allowed_silence
from support import parse_time

RUN_FOR_EVER_THEN_EXIT = 'if [ "$EDGEFLEET_JOB_ATTEMPT" = 1 ]; then exec sleep 3600; fi'


def one_round(bench: Bench, args: argparse.Namespace, n: int) -> tuple[list, list, list]:
    """One victim, its jobs, the kill and the rescue: (re-queued, done, problems)."""
    queue, rescuer_name = f"q{n}", f"rescuer-{n}"
    flags = [
        "-c",
        str(args.jobs),
        "-q",
        queue,
        "--heartbeat-interval",
        str(args.heartbeat_interval),
    ]
    victim = bench.start_worker(f"victim-{n}", *flags)
    with bench.admin() as api:
        command = ["sh", "-c", RUN_FOR_EVER_THEN_EXIT]
        body = {"command": command, "queue": queue, "retries": 1, "retry_delay": 0}
        ids = [api.call("POST", "/jobs", 201, json=body)["id"] for _ in range(args.jobs)]
        api.wait_for_worker(victim.hostname, lambda v: v["jobs_running"] == args.jobs, 60)
        time.sleep(args.heartbeat_interval * 1.5)  # the job processes are surely started
        killed_at = time.time()
        victim.kill()
        bench.start_worker(rescuer_name, *flags)
        views = api.wait_for_jobs(ids, timeout=args.offline_timeout * 4 + 60)
        requeued, done, problems = [], [], []
        for job_id, view in views.items():
            history = api.job(job_id)["history"]
            lost = next(e for e in history if e["event"] == "lost")
            requeued.append(parse_time(lost["at"]) - killed_at)
            done.append(parse_time(view["finished_at"]) - killed_at)
            events = [e["event"] for e in history]
            if view["state"] != "success":
                problems.append(f"job {job_id} lost: {view['state']} ({view['reason']})")
            elif events.count("succeeded") != 1 or view["worker"] != rescuer_name:
                problems.append(f"job {job_id} recorded oddly: {events}")
    return requeued, done, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--offline-timeout", type=float, default=10.0)
    parser.add_argument("--heartbeat-interval", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=4, help="jobs running on the victim")
    parser.add_argument("--quick", action="store_true", help="one round, 5 s offline timeout")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.offline_timeout = 1, 5.0
    install_signal_exit()
    requeued, done, problems = [], [], []
    with Bench() as bench:
        bench.start_server(EDGEFLEET_WORKER_OFFLINE_TIMEOUT=str(args.offline_timeout))
        for n in range(1, args.rounds + 1):
            r, d, p = one_round(bench, args, n)
            requeued, done, problems = requeued + r, done + d, problems + p
            print(f"round {n}: re-queued {min(r):.2f}-{max(r):.2f} s after the kill")
    rows = [
        [label, s.n, f"{s.p50:.2f} s", f"{s.max:.2f} s", f"{min(values):.2f} s"]
        for label, values in (("re-queued (lost event)", requeued), ("done on the rescuer", done))
        for s in [summarize(values)]
    ]
    allowed = allowed_silence(args.heartbeat_interval, args.offline_timeout)
    print_table(
        f"after kill -9 (offline timeout {args.offline_timeout:g} s, heartbeat "
        f"{args.heartbeat_interval:g} s: offline after {allowed:g} s of silence; "
        f"{args.jobs} jobs x {args.rounds} rounds)",
        ["", "jobs", "p50", "max", "min"],
        rows,
    )
    lost = sum(1 for p in problems if " lost: " in p)
    print(f"\njobs lost: {lost}, recorded oddly / twice: {len(problems) - lost}")
    print("\n".join(f"  {p}" for p in problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
