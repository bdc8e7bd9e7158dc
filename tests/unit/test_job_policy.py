"""The pure job rules: retry delays, what follows a failed attempt, why a job waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edgefleet.server.services.policy import (
    MAX_RETRY_DELAY,
    Capacity,
    after_failure,
    retry_delay,
    waiting_reason,
)

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def exact(a: float, b: float) -> float:
    return 1.0


def test_retry_delay_doubles_from_the_base_and_is_capped() -> None:
    assert [retry_delay(n, 10.0, uniform=exact) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert retry_delay(40, 10.0, uniform=exact) == MAX_RETRY_DELAY
    assert retry_delay(10_000, 10.0, uniform=exact) == MAX_RETRY_DELAY  # no overflow
    assert retry_delay(3, 0.0) == 0.0


def test_retry_delay_is_jittered_within_ten_percent() -> None:
    delays = {retry_delay(2, 10.0) for _ in range(200)}
    assert min(delays) >= 18.0 and max(delays) <= 22.0
    assert len(delays) > 1
    assert retry_delay(1, 10.0, uniform=lambda a, b: b) == pytest.approx(11.0)
    assert retry_delay(1, 10.0, uniform=lambda a, b: a) == pytest.approx(9.0)


def test_retry_delay_counts_retries_from_one() -> None:
    with pytest.raises(ValueError):
        retry_delay(0, 1.0)


def test_after_failure_retries_until_the_attempts_are_used_up() -> None:
    first = after_failure(1, retries=2, base_delay=5.0, uniform=exact)
    assert (first.retry, first.delay) == (True, 5.0)
    assert "attempt 2 of 3" in first.note
    second = after_failure(2, retries=2, base_delay=5.0, uniform=exact)
    assert (second.retry, second.delay) == (True, 10.0)
    last = after_failure(3, retries=2, base_delay=5.0)
    assert not last.retry and "no retries left (3 of 3 attempts)" in last.note


def test_no_retries_means_no_note() -> None:
    decision = after_failure(1, retries=0, base_delay=5.0)
    assert (decision.retry, decision.note) == (False, "")


def test_a_lost_attempt_comes_back_at_once_but_still_counts() -> None:
    lost = after_failure(1, retries=1, base_delay=60.0, immediate=True)
    assert (lost.retry, lost.delay) == (True, 0.0)
    assert "at once" in lost.note
    assert not after_failure(2, retries=1, base_delay=60.0, immediate=True).retry


def worker(name="w1", queues=("default",), concurrency=4, live=True, accepting=True):
    return Capacity(name, frozenset(queues), concurrency, live, accepting)


def test_a_job_that_fits_a_live_worker_just_waits_its_turn() -> None:
    assert waiting_reason("default", 2, None, NOW, [worker()]) is None
    assert waiting_reason("default", 4, NOW - timedelta(seconds=1), NOW, [worker()]) is None


def test_waiting_for_a_retry_names_the_attempt_and_the_time() -> None:
    due = NOW + timedelta(seconds=30)
    reason = waiting_reason("default", 1, due, NOW, [worker()], next_attempt=2, max_attempts=3)
    assert reason == "attempt 2 of 3 is due at 2026-01-01 12:00:30 UTC"


def test_no_live_worker_for_the_queue() -> None:
    workers = [worker(queues=("gpu",)), worker("w2", live=False, accepting=False)]
    assert waiting_reason("default", 1, None, NOW, workers) == (
        "no live worker serves queue 'default'"
    )
    assert waiting_reason("default", 1, None, NOW, []) == "no live worker serves queue 'default'"


def test_all_workers_of_the_queue_in_maintenance() -> None:
    reason = waiting_reason("default", 1, None, NOW, [worker(accepting=False)])
    assert reason == "every live worker serving queue 'default' is in maintenance or shutting down"


def test_more_slots_than_any_live_worker_offers() -> None:
    workers = [
        worker(concurrency=2),
        worker("w2", concurrency=3),
        worker("w3", concurrency=8, live=False),
    ]
    assert waiting_reason("default", 4, None, NOW, workers) == (
        "needs 4 slots, but the largest live worker serving queue 'default' offers 3"
    )
    assert waiting_reason("default", 3, None, NOW, workers) is None
