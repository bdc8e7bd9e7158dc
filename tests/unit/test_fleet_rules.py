"""The worker rules the server and the worker share: effective settings, accepting work,
matching by glob and labels."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from edgefleet import fleet_rules
from edgefleet.contract import WorkerState
from edgefleet.errors import InvalidRequest

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it


@dataclass
class Settings:
    flag_concurrency: int = 4
    concurrency_override: int | None = None
    concurrency_override_until: datetime | None = None
    flag_queues: list[str] | None = None
    queues_override: list[str] | None = None
    layer_concurrency: int | None = None
    layer_source: str | None = None


@pytest.mark.parametrize(
    ("override", "flag", "value"),
    [
        (None, 4, 4),
        (8, 4, 8),
        (1, 4, 1),
        (None, ["default"], ["default"]),
        (["gpu"], ["default"], ["gpu"]),
        ([], ["default"], []),  # an override is in force even when empty
    ],
)
def test_an_override_wins_over_the_flag_until_reset(override, flag, value) -> None:
    assert fleet_rules.effective(override, flag) == value


def test_what_takes_over_when_an_override_ends_is_the_layer_below() -> None:
    worker = Settings(flag_queues=["default"], concurrency_override=9)
    assert (fleet_rules.concurrency_below(worker), fleet_rules.source_below(worker)) == (4, "flag")
    worker.layer_concurrency, worker.layer_source = 6, "fleet-default"
    assert (fleet_rules.concurrency_below(worker), fleet_rules.source_below(worker)) == (
        6,
        "fleet-default",
    )
    assert (fleet_rules.concurrency(worker), fleet_rules.concurrency_source(worker)) == (
        9,
        "operator",
    )


def test_a_workers_settings_in_force() -> None:
    worker = Settings(flag_queues=["default"])
    assert (fleet_rules.concurrency(worker), fleet_rules.concurrency_source(worker)) == (4, "flag")
    assert fleet_rules.queues(worker) == ["default"]
    worker.concurrency_override, worker.queues_override = 2, ["a", "b"]
    assert (fleet_rules.concurrency(worker), fleet_rules.concurrency_source(worker)) == (
        2,
        "operator",
    )
    assert fleet_rules.queues(worker) == ["a", "b"]
    fleet_rules.queues(worker).append("c")  # a copy: the row is not changed through it
    assert worker.queues_override == ["a", "b"]


def test_concurrency_layers_resolve_override_then_standing_layer_then_flag() -> None:
    worker = Settings(layer_concurrency=6, layer_source="label-rule")
    assert (fleet_rules.concurrency(worker), fleet_rules.concurrency_source(worker)) == (
        6,
        "label-rule",
    )
    worker.concurrency_override = 3
    assert (fleet_rules.concurrency(worker), fleet_rules.concurrency_source(worker)) == (
        3,
        "operator",
    )
    worker.concurrency_override, worker.layer_concurrency = None, None
    assert (fleet_rules.concurrency(worker), fleet_rules.concurrency_source(worker)) == (4, "flag")


def rule(concurrency: int, **selector: str) -> fleet_rules.Rule:
    return fleet_rules.Rule(
        selector, concurrency, ",".join(f"{k}={v}" for k, v in selector.items())
    )


def test_the_most_specific_label_rule_wins_then_the_newest() -> None:
    labels = {"site": "a", "zone": "1", "kind": "press"}
    # newest first, as the server reads them; the fleet default (no selector) is no label rule
    rules = [rule(7, zone="1"), rule(5, site="a"), rule(4), rule(9, site="b")]
    assert fleet_rules.matching_rules(labels, rules) == rules[:2]  # one key each: newest first
    two_keys = rule(3, site="a", kind="press")
    assert [r.text for r in fleet_rules.matching_rules(labels, [*rules, two_keys])] == [
        "site=a,kind=press",  # the oldest, but with the most keys
        "zone=1",
        "site=a",
    ]
    assert fleet_rules.matching_rules({"site": "c"}, rules) == []
    assert fleet_rules.matching_rules(None, rules) == []


@pytest.mark.parametrize(
    ("sysinfo", "value", "per_cpu", "refused"),
    [
        ({"cpus": 2}, 16, 8, False),
        ({"cpus": 2}, 17, 8, True),
        ({"cpus": 4}, 3, 0.5, True),
        ({"cpus": 2}, 1000, 0, False),  # 0: the check is off
        ({}, 1000, 8, False),  # no CPU count reported: not checked
        ({"cpus": "many"}, 1000, 8, False),
    ],
)
def test_the_cpu_guardrail(sysinfo, value, per_cpu, refused) -> None:
    message = fleet_rules.cpu_refusal("w1", sysinfo, value, per_cpu)
    assert (message is not None) == refused
    if refused:
        limit = int(sysinfo["cpus"] * per_cpu)
        assert "'w1'" in message and f"{sysinfo['cpus']} CPUs" in message
        assert f"({limit})" in message and "--force" in message


def test_an_override_past_its_expiry_is_gone_before_the_sweep_clears_it() -> None:
    now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    until = now + timedelta(minutes=5)
    worker = Settings(concurrency_override=2, concurrency_override_until=until)
    assert fleet_rules.concurrency_override(worker, now) == 2
    assert fleet_rules.concurrency_until(worker, now) == until
    later = until + timedelta(microseconds=1)
    assert fleet_rules.concurrency_override(worker, until) is None  # due at the instant
    assert fleet_rules.concurrency_until(worker, later) is None
    worker.concurrency_override_until = datetime.now(UTC) - timedelta(seconds=1)
    assert (fleet_rules.concurrency(worker), fleet_rules.concurrency_source(worker)) == (4, "flag")
    worker.layer_concurrency, worker.layer_source = 6, "label-rule"  # the layer below it
    assert fleet_rules.concurrency(worker) == 6
    assert fleet_rules.concurrency_source(worker) == "label-rule"


@pytest.mark.parametrize(
    ("maintenance", "shutting_down", "free_slots", "accepts"),
    [
        (False, False, 1, True),
        (False, False, 8, True),
        (False, False, 0, False),
        (True, False, 4, False),
        (False, True, 4, False),
        (True, True, 4, False),
    ],
)
def test_accepts_work(maintenance, shutting_down, free_slots, accepts) -> None:
    got = fleet_rules.accepts_work(
        maintenance=maintenance, shutting_down=shutting_down, free_slots=free_slots
    )
    assert got is accepts


S = WorkerState
#: state, maintenance requested, shutdown requested -> live, accepting
OBSERVED = [
    (S.IDLE, False, False, True, True),
    (S.RUNNING, False, False, True, True),
    (S.STARTING, False, False, True, True),
    (S.UNKNOWN, False, False, True, True),  # late, not gone: still counted on
    (S.IDLE, True, False, True, False),  # asked to, not there yet
    (S.IDLE, False, True, True, False),
    (S.MAINTENANCE, False, False, True, False),  # says so itself (a local switch)
    (S.MAINTENANCE_PENDING, False, False, True, False),
    (S.SHUTDOWN_PENDING, False, False, True, False),
    (S.OFFLINE, False, False, False, False),
    (S.STOPPED, False, False, False, False),
    (S.REVOKED, False, False, False, False),
]


@pytest.mark.parametrize(("state", "maintenance", "shutdown", "live", "accepting"), OBSERVED)
def test_what_the_server_counts_on(state, maintenance, shutdown, live, accepting) -> None:
    assert fleet_rules.is_live(state) is live
    got = fleet_rules.observed_accepting(
        state, maintenance_requested=maintenance, shutdown_requested=shutdown
    )
    assert got is accepting


def test_every_state_is_judged() -> None:
    assert {row[0] for row in OBSERVED} == set(WorkerState)


@pytest.mark.parametrize(
    ("free", "concurrency", "in_use", "budget"),
    [
        (4, 4, 0, 4),
        (8, 4, 0, 4),  # never beyond the central concurrency
        (2, 4, 0, 2),  # never beyond what the worker offers
        (4, 4, 3, 1),
        (4, 4, 4, 0),
        (4, 2, 4, 0),  # lowered below what runs: nothing new, never negative
    ],
)
def test_slot_budget(free, concurrency, in_use, budget) -> None:
    assert fleet_rules.slot_budget(free, concurrency, in_use) == budget


MATCHES = [
    # hostname, labels, pattern, selector, matches
    ("site-a-1", {}, None, None, True),
    ("site-a-1", None, "site-a-1", None, True),
    ("site-a-1", {}, "site-a-2", None, False),
    ("site-a-1", {}, "site-a-*", None, True),
    ("site-b-1", {}, "site-a-*", None, False),
    ("w1", {}, "w[12]", None, True),
    ("w3", {}, "w[!12]", None, True),
    ("W1", {}, "w1", None, False),  # case counts, on every platform
    ("site-a-1", {"site": "a"}, None, {"site": "a"}, True),
    ("site-a-1", {"site": "a", "env": "prod"}, None, {"site": "a"}, True),
    ("site-a-1", {"site": "a"}, None, {"site": "a", "env": "prod"}, False),
    ("site-a-1", {"site": "b"}, None, {"site": "a"}, False),
    ("site-a-1", None, None, {"site": "a"}, False),
    ("site-a-1", {"site": "a"}, "site-b-*", {"site": "a"}, False),  # both must hold
    ("site-a-1", {"site": "a"}, "site-*", {"site": "a"}, True),
    ("site-a-1", {"site": "a"}, None, {}, True),
]


@pytest.mark.parametrize(("hostname", "labels", "pattern", "selector", "expected"), MATCHES)
def test_matches(hostname, labels, pattern, selector, expected) -> None:
    assert fleet_rules.matches(hostname, labels, pattern, selector) is expected


@pytest.mark.parametrize(
    ("name", "glob"), [("site-a-1", False), ("site-*", True), ("w?", True), ("w[12]", True)]
)
def test_is_glob(name: str, glob: bool) -> None:
    assert fleet_rules.is_glob(name) is glob


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("site a*", "use letters, digits"),
        ("site/*", "use letters, digits"),
        ("w[1", "'[' is never closed"),
        ("w[[1]]", "nested '['"),
    ],
)
def test_check_glob_refuses(pattern: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        fleet_rules.check_glob(pattern)
    assert message in str(refused.value)


@pytest.mark.parametrize("pattern", ["site-*", "w[12]", "w[!1]", "a?c", "x-*-[0-9]"])
def test_check_glob_accepts(pattern: str) -> None:
    fleet_rules.check_glob(pattern)
