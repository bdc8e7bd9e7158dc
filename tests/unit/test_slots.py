"""SlotLimiter: slot accounting against a limit that may change while jobs run."""

from __future__ import annotations

import pytest

from edgefleet.worker.slots import SlotLimiter

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it


def test_acquire_up_to_the_limit_and_no_further():
    limiter = SlotLimiter(2)
    assert limiter.free == 2
    assert limiter.try_acquire()
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    assert (limiter.in_use, limiter.free) == (2, 0)
    limiter.release()
    assert limiter.free == 1
    assert limiter.try_acquire()
    assert not limiter.try_acquire()


def test_multi_slot_jobs_take_all_their_slots_or_none():
    limiter = SlotLimiter(3)
    assert limiter.try_acquire(2)
    assert not limiter.try_acquire(2)
    assert limiter.in_use == 2  # a refused request takes nothing
    assert limiter.try_acquire(1)
    limiter.release(2)
    assert (limiter.in_use, limiter.free) == (1, 2)


@pytest.mark.parametrize("slots", [0, -1])
def test_acquiring_no_or_negative_slots_is_refused(slots):
    limiter = SlotLimiter(2)
    assert not limiter.try_acquire(slots)
    assert limiter.in_use == 0


def test_lowering_below_use_touches_nothing_running_and_blocks_new_work():
    limiter = SlotLimiter(5)
    for _ in range(5):
        assert limiter.try_acquire()
    assert limiter.set_limit(1) == 5
    assert (limiter.limit, limiter.in_use, limiter.free) == (1, 5, 0)
    for running in (4, 3, 2, 1):
        limiter.release()
        assert limiter.in_use == running
        assert limiter.free == 0
        assert not limiter.try_acquire()
    limiter.release()
    assert limiter.free == 1
    assert limiter.try_acquire()
    assert not limiter.try_acquire()


def test_raising_the_limit_frees_slots_at_once():
    limiter = SlotLimiter(1)
    assert limiter.try_acquire()
    assert limiter.set_limit(4) == 1
    assert limiter.free == 3
    assert all(limiter.try_acquire() for _ in range(3))
    assert not limiter.try_acquire()


@pytest.mark.parametrize("limit", [0, -3])
def test_limits_below_one_are_invalid(limit):
    with pytest.raises(ValueError):
        SlotLimiter(limit)
    limiter = SlotLimiter(2)
    with pytest.raises(ValueError):
        limiter.set_limit(limit)
    assert limiter.limit == 2


def test_releasing_more_than_in_use_is_an_error():
    limiter = SlotLimiter(2)
    assert limiter.try_acquire()
    with pytest.raises(ValueError):
        limiter.release(2)
    assert limiter.in_use == 1
