"""How long an ``edgefleet`` call takes from exec to exit: wall time, and CPU time.

``--version``, ``--help``, and ``list-workers -o json`` against a local server with an
operator token and signing with the shared secret; baseline: a process importing every command
module, as every call once did. CPU time holds on a busy host.

    .venv/bin/python bench/cli_startup.py [--runs 15] [--quick]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

from _common import Bench, fmt_ms, git_state, print_table

from support import EDGEFLEET, Cli

EAGER_IMPORTS = "from edgefleet.cli import audit, control, db, jobs, server, token, worker, workers"
GOALS = {"--version": 0.150, "--help": 0.150, "list-workers -o json": 0.300}
WITH_TOKEN = "list-workers -o json (operator token)"
WITH_SECRET = "list-workers -o json (shared secret)"


def time_call(argv: list[str], env: dict[str, str], runs: int) -> tuple[list[float], float]:
    """Wall seconds of each run, and the median CPU seconds of one."""
    took, cpu = [], []
    for _ in range(runs):
        before, began = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        took.append(time.perf_counter() - began)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return took, statistics.median(cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="3 runs each: a smoke run")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    rows, ok = [], True
    with Bench() as bench:
        bench.start_server()
        secret_env = bench.env()
        # A remote operator's machine: a token, not the shared secret.
        token_env = {k: v for k, v in secret_env.items() if k != "EDGEFLEET_SECRET"}
        viewer = Cli(secret_env).json("token", "create", "--name", "bench", "--role", "viewer")
        token_env["EDGEFLEET_TOKEN"] = viewer["token"]
        list_workers = [str(EDGEFLEET), "list-workers", "-o", "json"]
        calls = {
            "eager imports (baseline)": ([sys.executable, "-c", EAGER_IMPORTS], secret_env),
            "--version": ([str(EDGEFLEET), "--version"], secret_env),
            "--help": ([str(EDGEFLEET), "--help"], secret_env),
            WITH_TOKEN: (list_workers, token_env),
            WITH_SECRET: (list_workers, secret_env),
        }
        for name, (argv, env) in calls.items():
            took, cpu = time_call(argv, env, runs)
            median, goal = statistics.median(took), GOALS.get(name.split(" (")[0])
            ok &= goal is None or median < goal
            target = f"< {fmt_ms(goal)} {'PASS' if median < goal else 'FAIL'}" if goal else "-"
            rows.append([name, fmt_ms(median), fmt_ms(max(took)), fmt_ms(cpu), target])
    print_table(
        f"edgefleet start-up, {runs} runs each ({git_state()})",
        ["call", "median", "slowest", "CPU", "goal"],
        rows,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
