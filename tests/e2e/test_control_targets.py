"""Fleet control from the CLI: bulk targeting, queues, bad input, --wait, audit, filters."""

from __future__ import annotations

import signal

import pytest

from support import AdminApi, squash, wait_until


@pytest.fixture
def fleet(server, start_worker, admin_api):
    """Three live workers: two at site a, one at site b, each labelled with its site. They
    start side by side (their start-up is most of each test's time), then each is awaited as
    ``start_worker`` would: listed with its own pid and its desired state acknowledged."""
    workers = {
        name: start_worker(name, concurrency=2, extra_args=("--label", f"site={site}"), wait=False)
        for name, site in (("site-a-1", "a"), ("site-a-2", "a"), ("site-b-1", "b"))
    }
    for name, worker in workers.items():
        admin_api.wait_for_worker(
            name,
            lambda view, pid=worker.pid: (
                view["pid"] == pid
                and view["applied_concurrency"] is not None
                and view["applied_version"] == view["desired_version"]
            ),
            message=f"{name} registered and acknowledged",
        )
    return workers


def versions(admin_api) -> dict[str, int]:
    return {w["hostname"]: w["desired_version"] for w in admin_api.workers()}


def test_glob_selector_and_all_touch_exactly_their_workers(fleet, cli, cli_json, admin_api):
    result = cli("set-worker-concurrency", "-H", "site-a-*", "-c", "4", "--wait", check=True)
    assert "site-a-1" in result.stdout and "site-a-2" in result.stdout
    assert "site-b-1" not in result.stdout
    views = {w["hostname"]: w for w in admin_api.workers()}
    assert views["site-a-1"]["applied_concurrency"] == 4
    assert views["site-a-2"]["applied_concurrency"] == 4
    assert views["site-b-1"]["concurrency"] == 2

    changed = cli_json("set-worker-concurrency", "--selector", "site=b", "-c", "3", "--wait")
    assert changed["workers"] == ["site-b-1"]
    assert changed["not_acknowledged"] == []
    assert admin_api.worker("site-b-1")["applied_concurrency"] == 3

    everything = cli_json("set-worker-concurrency", "--all", "-c", "5", "--wait")
    assert sorted(everything["workers"]) == ["site-a-1", "site-a-2", "site-b-1"]
    assert {w["applied_concurrency"] for w in admin_api.workers()} == {5}


BAD_TARGETS = [
    (("-H", "nope", "-c", "3"), "no worker named 'nope'"),
    (("-H", "zzz-*", "-c", "3"), "no worker matches"),
    (("-H", "site-[a", "-c", "3"), "never closed"),
    (("-H", "site a*", "-c", "3"), "bad hostname pattern"),
    (("--selector", "", "-c", "3"), "empty selector"),
    (("--selector", "site", "-c", "3"), "KEY=VALUE"),
    (("--selector", "site=nowhere", "-c", "3"), "no worker matches"),
    (("-H", "site-a-1", "--all", "-c", "3"), "exactly one"),
    (("-H", "site-a-1"), "exactly one of --concurrency"),
    (("-H", "site-a-1", "-c", "3", "--reset"), "exactly one of --concurrency"),
]


def test_bad_targets_are_refused_and_change_nothing(fleet, cli, admin_api):
    """One fleet for every case: each is refused, so each finds the fleet as it was."""
    before = versions(admin_api)
    for args, message in BAD_TARGETS:
        result = cli("set-worker-concurrency", *args)
        assert result.returncode != 0, args
        assert message in squash(result.stderr), (args, result.stderr)
        assert versions(admin_api) == before, args


def test_bad_bodies_over_the_api_are_4xx_json(fleet, admin_api):
    before = versions(admin_api)
    cases = [
        {"edge_hostname": "site-a-*"},  # neither concurrency nor reset
        {"edge_hostname": "site-a-*", "concurrency": 0},
        {"edge_hostname": "site-a-*", "concurrency": 2000},
        {"edge_hostname": "site-a-*", "concurrency": "4"},
        {"edge_hostname": "site-a-*", "concurrency": 4, "surprise": 1},
        {"selector": {}, "concurrency": 4},
        {"concurrency": 4},
    ]
    for body in cases:
        response = admin_api.request("POST", "/workers/actions/set-concurrency", json=body)
        assert 400 <= response.status_code < 500, (body, response.text)
        assert "error" in response.json() and "detail" in response.json()
    assert versions(admin_api) == before


def test_queues_add_remove_and_reset(fleet, cli, cli_json, admin_api, job_recorder):
    cli("add-worker-queues", "-H", "site-b-1", "-q", "gpu,io", "--wait", check=True)
    assert admin_api.worker("site-b-1")["queues"] == ["default", "gpu", "io"]

    job = admin_api.submit(job_recorder.command(seconds=0), queue="gpu")
    assert admin_api.wait_for_jobs([job])[job]["worker"] == "site-b-1"

    before = versions(admin_api)
    refused = cli("remove-worker-queues", "-H", "site-b-1", "-q", "default,gpu,io")
    assert refused.returncode == 1
    assert "no queue" in squash(refused.stderr)
    assert versions(admin_api) == before
    assert admin_api.worker("site-b-1")["queues"] == ["default", "gpu", "io"]

    cli("remove-worker-queues", "-H", "site-b-1", "-q", "default", "--wait", check=True)
    assert admin_api.worker("site-b-1")["queues"] == ["gpu", "io"]
    other = admin_api.submit(job_recorder.command(seconds=0), queue="default")
    assert admin_api.wait_for_jobs([other])[other]["worker"] in {"site-a-1", "site-a-2"}

    reset = cli_json("reset-worker-queues", "-H", "site-b-1", "--wait")
    assert reset["changes"][0]["new"] == ["default"]
    assert admin_api.worker("site-b-1")["queues"] == ["default"]


@pytest.mark.same_on_every_backend  # the CLI's --wait
def test_wait_names_a_worker_that_cannot_acknowledge(
    edgefleet_env, server_factory, start_worker, cli
):
    # A long offline timeout and a 10 s heartbeat keep the frozen worker "online" (neither
    # unknown nor offline) for 30 s, while the long-poll brings the change to the live one.
    edgefleet_env["EDGEFLEET_WORKER_OFFLINE_TIMEOUT"] = "120"
    server = server_factory()
    admin_api = AdminApi(server.url, edgefleet_env["EDGEFLEET_SECRET"])
    start_worker("site-a-1", heartbeat_interval=10)
    frozen = start_worker("site-a-2", heartbeat_interval=10)
    frozen.send(signal.SIGSTOP)
    try:
        result = cli(
            "set-worker-concurrency", "-H", "site-a-*", "-c", "6", "--wait", "--timeout", "8"
        )
        assert result.returncode == 1
        assert "site-a-2" in squash(result.stderr)
        assert "site-a-1" not in squash(result.stderr)
        assert admin_api.worker("site-a-1")["applied_concurrency"] == 6
    finally:
        frozen.send(signal.SIGCONT)
    admin_api.wait_applied("site-a-2", 6)


def test_list_workers_filters(fleet, cli, cli_json):
    names = lambda rows: sorted(r["hostname"] for r in rows)  # noqa: E731
    assert names(cli_json("list-workers", "-H", "site-a-*")) == ["site-a-1", "site-a-2"]
    assert names(cli_json("list-workers", "--selector", "site=b")) == ["site-b-1"]
    assert names(cli_json("list-workers", "--state", "idle")) == [
        "site-a-1",
        "site-a-2",
        "site-b-1",
    ]
    assert names(cli_json("list-workers", "--state", "maintenance")) == []
    cli("add-worker-queues", "-H", "site-a-2", "-q", "gpu", "--wait", check=True)
    assert names(cli_json("list-workers", "--queues", "gpu,io")) == ["site-a-2"]
    bad = cli("list-workers", "-H", "site-[")
    assert bad.returncode == 1 and "never closed" in squash(bad.stderr)


def test_audit_records_actor_old_new_and_comment(fleet, cli, cli_json):
    cli("set-worker-concurrency", "-H", "site-a-1", "-c", "7", check=True)
    cli("remote-edge-worker-request-maintenance", "-H", "site-b-1", "-c", "swap disk", check=True)
    entries = cli_json("audit")
    concurrency = next(e for e in entries if e["field"] == "concurrency")
    assert concurrency == {
        **concurrency,
        "actor": "test-operator",
        "target": "site-a-1",
        "old": 2,
        "new": 7,
    }
    maintenance = next(e for e in entries if e["field"] == "maintenance")
    assert maintenance["target"] == "site-b-1"
    assert maintenance["comment"] == "swap disk"
    assert (maintenance["old"], maintenance["new"]) == (False, True)

    only_b = cli_json("audit", "-H", "site-b-1")
    assert only_b and {e["target"] for e in only_b} == {"site-b-1"}
    assert cli_json("audit", "--since", "2999-01-01T00:00:00") == []
    assert len(cli_json("audit", "--since", "10m")) == len(entries)
    table = cli("audit", check=True).stdout
    assert "test-operator" in table and "swap disk" in table
    bad = cli("audit", "--since", "yesterday-ish")
    assert bad.returncode == 2 and "--since" in squash(bad.stderr)


def test_offline_worker_gets_all_changes_on_return(server, start_worker, cli, admin_api):
    worker = start_worker("site-c-1", concurrency=2)
    assert worker.stop() == 0
    wait_until(lambda: admin_api.worker("site-c-1")["state"] == "stopped")

    cli("set-worker-concurrency", "-H", "site-c-1", "-c", "6", check=True)
    cli("add-worker-queues", "-H", "site-c-1", "-q", "gpu", check=True)
    result = cli(
        "remote-edge-worker-request-maintenance",
        "-H",
        "site-c-1",
        "-c",
        "later",
        "--wait",
        check=True,
    )
    assert "site-c-1" in result.stdout and "on return" in result.stdout

    back = start_worker("site-c-1", concurrency=3)
    view = admin_api.wait_for_worker(
        "site-c-1", lambda v: v["state"] == "maintenance" and v["pid"] == back.pid
    )
    assert view["applied_concurrency"] == 6
    assert view["queues"] == ["default", "gpu"]
    assert view["applied_version"] == view["desired_version"]
