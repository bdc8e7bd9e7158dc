"""Soak: ten minutes of jobs on two PostgreSQL replicas and 20 real workers under chaos, then
every job counted from its own marks (tests/support/soak.py, which tests/e2e/test_soak.py runs
for a minute). Exits 1 if anything was lost or run twice.

    .venv/bin/python bench/soak.py [--quick]    # --quick: the test's profile, 40 s, 8 workers
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from _common import git_state, postgres_server

from support.soak import QUICK, Settings, run_soak


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for field in dataclasses.fields(Settings):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(field.default), default=field.default)
    parser.add_argument("--quick", action="store_true", help="the test's profile: a smoke run")
    args = parser.parse_args(argv)
    settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)}
    settings = QUICK if args.quick else Settings(**settings)
    if min(settings.duration, settings.rate, settings.chaos_interval, settings.long_max) <= 0:
        parser.error("--duration, --rate, --chaos-interval and --long-max must be > 0")
    if settings.max_cut <= 1 or settings.workers < 2:
        parser.error("--max-cut must be > 1 and --workers at least 2")
    return settings


def main(argv: list[str] | None = None) -> int:
    settings, started = parse_args(argv), time.monotonic()
    home = tempfile.TemporaryDirectory(prefix="edgefleet-soak-", ignore_cleanup_errors=True)
    with home as base, postgres_server() as pg_url:
        outcome = run_soak(settings, Path(base), pg_url)
    print(f"\nsoak on {git_state()}")
    outcome.print()
    print(f"wall time {time.monotonic() - started:.0f} s in all ({settings.duration:g} s of chaos)")
    return 1 if outcome.lost or outcome.twice else 0


if __name__ == "__main__":
    sys.exit(main())
