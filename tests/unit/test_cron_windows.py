"""Schedule windows from cron expressions in a time zone: open or closed at a given time,
across midnight and across changes of daylight saving time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edgefleet import cron_windows
from edgefleet.cron_windows import Window, next_boundary, next_start, open_window

pytestmark = pytest.mark.same_on_every_backend

NIGHT = "0 22 * * *"
BERLIN = "Europe/Berlin"
EIGHT_HOURS = 8 * 3600


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "window"),
    [
        # Winter (CET, UTC+1): 22:00 local is 21:00 UTC; open until 06:00 local.
        (utc(2024, 1, 10, 20, 59), None),
        (utc(2024, 1, 10, 21, 0), Window(utc(2024, 1, 10, 21), utc(2024, 1, 11, 5))),
        (utc(2024, 1, 10, 23, 30), Window(utc(2024, 1, 10, 21), utc(2024, 1, 11, 5))),  # 00:30
        (utc(2024, 1, 11, 4, 59), Window(utc(2024, 1, 10, 21), utc(2024, 1, 11, 5))),
        (utc(2024, 1, 11, 5, 0), None),  # 06:00 local: closed
    ],
)
def test_a_night_window_stays_open_across_midnight(now, window):
    assert open_window(NIGHT, BERLIN, EIGHT_HOURS, now) == window


def test_the_window_lasts_eight_real_hours_across_the_spring_change():
    """22:00 CET on 30 March 2024; clocks go from 02:00 to 03:00 that night, so eight hours
    later it is 07:00 CEST (05:00 UTC)."""
    window = Window(utc(2024, 3, 30, 21), utc(2024, 3, 31, 5))
    assert open_window(NIGHT, BERLIN, EIGHT_HOURS, utc(2024, 3, 31, 4, 30)) == window  # 06:30
    assert open_window(NIGHT, BERLIN, EIGHT_HOURS, utc(2024, 3, 31, 5, 0)) is None
    # The next start is 22:00 CEST, an hour earlier in UTC than the night before.
    assert next_start(NIGHT, BERLIN, utc(2024, 3, 31, 5)) == utc(2024, 3, 31, 20)


def test_the_window_across_the_autumn_change():
    """22:00 CEST on 26 October 2024 (20:00 UTC); eight hours later it is 05:00 CET."""
    window = Window(utc(2024, 10, 26, 20), utc(2024, 10, 27, 4))
    assert open_window(NIGHT, BERLIN, EIGHT_HOURS, utc(2024, 10, 27, 3, 59)) == window
    assert open_window(NIGHT, BERLIN, EIGHT_HOURS, utc(2024, 10, 27, 4)) is None
    assert next_start(NIGHT, BERLIN, utc(2024, 10, 27, 4)) == utc(2024, 10, 27, 21)


def test_a_start_in_the_skipped_hour_runs_at_the_change():
    """02:30 does not exist in Berlin on 31 March 2024: the window opens at 03:00 CEST."""
    assert next_start("30 2 * * *", BERLIN, utc(2024, 3, 30, 23)) == utc(2024, 3, 31, 1)
    assert open_window("30 2 * * *", BERLIN, 3600, utc(2024, 3, 31, 1, 30)) == Window(
        utc(2024, 3, 31, 1), utc(2024, 3, 31, 2)
    )


def test_the_time_zone_moves_the_window():
    now = utc(2024, 1, 10, 21, 30)
    assert open_window(NIGHT, "UTC", 3600, now) is None
    assert open_window(NIGHT, BERLIN, 3600, now) is not None


def test_overlapping_starts_keep_the_window_open_until_the_latest_ends():
    now = utc(2024, 1, 10, 12, 30, 15)
    assert open_window("* * * * *", "UTC", 3600, now) == Window(
        utc(2024, 1, 10, 12, 30), utc(2024, 1, 10, 13, 30)
    )
    assert next_boundary("* * * * *", "UTC", 3600, now) == utc(2024, 1, 10, 12, 31)


def test_the_next_boundary_is_the_end_of_the_open_window_or_the_next_start():
    assert next_boundary(NIGHT, "UTC", 3600, utc(2024, 1, 10, 22, 15)) == utc(2024, 1, 10, 23)
    assert next_boundary(NIGHT, "UTC", 3600, utc(2024, 1, 10, 23)) == utc(2024, 1, 11, 22)


@pytest.mark.parametrize(
    ("check", "value", "says"),
    [
        (cron_windows.check_cron, "0 22 * *", "five fields"),
        (cron_windows.check_cron, "0 0 22 * * *", "five fields"),
        (cron_windows.check_cron, "61 22 * * *", "Bad minute"),
        (cron_windows.check_cron, "0 0 30 2 *", "Bad day-of-month"),
        (cron_windows.zone, "Europe/Nowhere", "unknown time zone"),
        (cron_windows.zone, "../etc/passwd", "unknown time zone"),
        (cron_windows.check_duration, 0, "bad duration"),
        (cron_windows.check_duration, 400 * 86400, "bad duration"),
    ],
)
def test_bad_input_is_refused_in_one_line(check, value, says):
    with pytest.raises(ValueError, match=says) as raised:
        check(value)
    assert "\n" not in str(raised.value)
