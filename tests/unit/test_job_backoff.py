"""Worker retry delays: exponential with full jitter, capped, reset by a success."""

from __future__ import annotations

import pytest

from edgefleet.backoff import Backoff

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it


def test_bounds_double_up_to_the_cap() -> None:
    backoff = Backoff(base=0.5, cap=4.0, uniform=lambda a, b: b)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.failures == 6


def test_full_jitter_stays_between_the_floor_and_the_bound() -> None:
    backoff = Backoff(base=1.0, cap=8.0, floor=0.1)
    for _ in range(50):
        bound = backoff.bound()
        delay = backoff.next()
        assert 0.1 <= delay <= bound


def test_reset_starts_again_from_the_bottom() -> None:
    backoff = Backoff(base=1.0, cap=100.0, uniform=lambda a, b: b)
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert backoff.next() == 1.0


def test_many_failures_do_not_overflow() -> None:
    backoff = Backoff(base=1.0, cap=30.0)
    backoff.failures = 10_000
    assert backoff.next() <= 30.0


@pytest.mark.parametrize(("base", "cap", "floor"), [(0, 1, 0), (2, 1, 0), (1, 2, -1)])
def test_bad_parameters_are_refused(base: float, cap: float, floor: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base, cap, floor)
