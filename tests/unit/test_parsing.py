"""The one reader of operator text: KEY=VALUE pairs, selectors, labels, env and queue lists."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edgefleet import parsing

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

PAIRS = [
    # item, strip, expected
    ("a=b", True, ("a", "b")),
    (" a = b ", True, ("a", "b")),
    (" a = b ", False, (" a ", " b ")),
    ("a=", True, ("a", "")),
    ("a=b=c", True, ("a", "b=c")),
    ("PATH=/x:/y", False, ("PATH", "/x:/y")),
]


@pytest.mark.parametrize(("item", "strip", "expected"), PAIRS)
def test_split_pair(item: str, strip: bool, expected: tuple[str, str]) -> None:
    assert parsing.split_pair(item, strip=strip) == expected


@pytest.mark.parametrize("item", ["a", "", "=b", " =b", "   "])
def test_split_pair_refuses_what_is_not_key_value(item: str) -> None:
    with pytest.raises(ValueError, match="is not KEY=VALUE"):
        parsing.split_pair(item)


def test_a_secret_item_is_never_echoed() -> None:
    with pytest.raises(ValueError) as caught:
        parsing.parse_pairs(["TOKEN-hunter2"], strip=False, secret=True)
    assert "hunter2" not in str(caught.value)
    assert str(caught.value) == "a value is not KEY=VALUE"


def test_a_later_key_wins() -> None:
    assert parsing.parse_pairs(["a=1", "b=2", "a=3"]) == {"a": "3", "b": "2"}


SELECTORS = [
    ("site=a", {"site": "a"}),
    ("site=a,env=prod", {"site": "a", "env": "prod"}),
    (" site = a , , env=prod ,", {"site": "a", "env": "prod"}),
    ("site=", {"site": ""}),
]


@pytest.mark.parametrize(("text", "expected"), SELECTORS)
def test_parse_selector(text: str, expected: dict[str, str]) -> None:
    assert parsing.parse_selector(text) == expected
    assert parsing.parse_selector(parsing.format_selector(expected)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty selector: give at least one KEY=VALUE label"),
        (" , ,", "empty selector"),
        ("site", "bad selector: 'site' is not KEY=VALUE"),
        ("site=a,env", "bad selector: 'env' is not KEY=VALUE"),
        # two values for one key matched the last one only: a change reached other workers
        ("site=plant2,site=plant1", "bad selector: 'site' is given twice"),
        ("si te=x", "bad selector: bad label 'si te=x': use KEY=VALUE with a key of letters"),
        ("=a", "is not KEY=VALUE"),
    ],
)
def test_parse_selector_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parsing.parse_selector(text)


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([], {}),
        (["site=north"], {"site": "north"}),
        ([" site = north "], {"site": "north"}),
        (["example.com/role=edge", "a_b-c.d=1"], {"example.com/role": "edge", "a_b-c.d": "1"}),
        (["k" * 63 + "=v"], {"k" * 63: "v"}),
    ],
)
def test_parse_labels(items: list[str], expected: dict[str, str]) -> None:
    assert parsing.parse_labels(items) == expected


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("site", "is not KEY=VALUE"),
        ("si te=x", "a key of letters, digits"),
        ("k*=x", "a key of letters, digits"),
        ("k" * 64 + "=v", "at most 63"),
        ("site=a\x07b", "control characters"),
        ("site=a\x7f", "control characters"),
    ],
)
def test_parse_labels_refuses(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parsing.parse_labels([item])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("default", ["default"]),
        ("default,gpu", ["default", "gpu"]),
        (" default , gpu ,", ["default", "gpu"]),
        ("a.b:c-d_e", ["a.b:c-d_e"]),
    ],
)
def test_parse_queues(text: str, expected: list[str]) -> None:
    assert parsing.parse_queues(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "give at least one queue"),
        (" , ", "give at least one queue"),
        ("default,g pu", "bad queue name 'g pu'"),
        ("a/b", "bad queue name"),
        ("q" * 256, "bad queue name"),
    ],
)
def test_parse_queues_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parsing.parse_queues(text)


def _accepts(check, value) -> bool:
    try:
        check(value)
    except ValueError:  # pydantic's ValidationError is one
        return False
    return True


@pytest.mark.parametrize(
    ("kind", "value"),
    [("label", k) for k in ["site", "example.com/role", "_x", "k" * 63, "k" * 64, "si te", ""]]
    + [("queue", q) for q in ["default", "a.b:c", "q" * 255, "q" * 256, "a b", "a/b"]],
)
def test_the_cli_and_the_contract_accept_the_same_names(kind: str, value: str) -> None:
    """The contract takes its name syntax from here: a name the CLI lets through is never a
    422 from the server, and the other way round."""
    from pydantic import TypeAdapter

    from edgefleet.contract import LabelKey, QueueName

    if kind == "label":
        cli, wire = (lambda v: parsing.parse_labels([f"{v}=x"])), TypeAdapter(LabelKey)
    else:
        cli, wire = parsing.parse_queues, TypeAdapter(QueueName)
    assert _accepts(cli, value) == _accepts(wire.validate_python, value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("30s", 30),
        ("15m", 900),
        ("2h", 7200),
        ("1d", 86400),
        ("1.5h", 5400),
        ("1h30m", 5400),
        ("2d12h", 216000),
        ("1h0m5s", 3605),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parsing.parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "h", "-1h", "1w", "soon", "30m1h", "1h1h", "1.5h30m", "1h 30m", "hm"]
)
def test_parse_duration_refuses_what_is_not_one(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parsing.parse_duration(text)


NOON = datetime.now().astimezone().replace(hour=12, minute=0, second=0, microsecond=0)


@pytest.mark.parametrize(
    ("text", "days", "hour", "minute"),
    [("13:30", 0, 13, 30), ("12:00", 1, 12, 0), ("9:05", 1, 9, 5), ("00:00", 1, 0, 0)],
)
def test_until_a_time_of_day_is_the_next_one(text: str, days: int, hour: int, minute: int):
    when = parsing.parse_until(text, NOON)
    assert when.tzinfo is not None and when > NOON
    local = when.astimezone()
    assert (local.date() - NOON.date()).days == days
    assert (local.hour, local.minute, local.second) == (hour, minute, 0)


def test_until_an_iso_time_keeps_its_offset() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    when = parsing.parse_until("2030-01-01T18:00+01:00", now)
    assert when == datetime(2030, 1, 1, 17, tzinfo=UTC)
    assert parsing.parse_until("2030-01-02T00:00Z", now) == datetime(2030, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("24:00", "HH:MM"),
        ("12:60", "HH:MM"),
        ("2030-01-01T18:00", "offset"),
        ("2029-12-31T23:00+00:00", "in the past"),
        ("2030-01-01T00:00+00:00", "in the past"),  # now is not after now
        ("tomorrow", "bad time"),
    ],
)
def test_until_refuses_a_bad_or_past_time(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parsing.parse_until(text, datetime(2030, 1, 1, tzinfo=UTC))
