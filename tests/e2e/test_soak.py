"""A minute of the soak (support/soak.py): two replicas on PostgreSQL, workers and their links
killed, cut, slowed and reconfigured while jobs stream in; nothing lost, nothing run twice.

The full ten minutes with twenty workers is a benchmark run by hand; this short one keeps
the suite honest about the same claims. Timing figures are the benchmark's business.
``EDGEFLEET_SOAK_SECONDS`` sets its length (default 40, the quick profile; 60 or more in the
full one).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from support import PG_URL_ENV
from support.soak import QUICK, run_soak

SECONDS = int(os.environ.get("EDGEFLEET_SOAK_SECONDS") or QUICK.duration)

pytestmark = pytest.mark.skipif(
    not os.environ.get(PG_URL_ENV),
    reason=f"two replicas share a PostgreSQL database; set {PG_URL_ENV} to run",
)


@pytest.mark.timeout(600)
def test_a_minute_of_chaos_loses_nothing_and_runs_nothing_twice(tmp_path: Path):
    settings = dataclasses.replace(QUICK, duration=SECONDS)
    outcome = run_soak(settings, tmp_path, os.environ[PG_URL_ENV])
    assert outcome.lost == {}
    assert outcome.twice == {}, "\n".join(
        f"job {job}: {why}\n{outcome.evidence[job]}" for job, why in outcome.twice.items()
    )
    assert outcome.states["success"] > SECONDS
    assert outcome.chaos["kill"] + outcome.chaos["term"] > 0
