"""Fleet control from the CLI: bulk targeting, queues, bad input, --wait, audit, filters."""

from __future__ import annotations

import signal

import pytest

from support import AdminApi, Cli, squash, wait_until

#: The shared fleet: hostname -> site label. Every worker runs with ``-c 2 -q default``.
SITES = {"site-a-1": "a", "site-a-2": "a", "site-b-1": "b"}

#: What puts the shared fleet back as it started, between tests: (action, body).
PUT_BACK = [
    ("set-concurrency", {"all": True, "reset": True}),
    ("reset-queues", {"all": True}),
    ("exit-maintenance", {"all": True}),
]


class Fleet:
    """The module's server and workers, with a CLI and an admin client for them."""

    def __init__(self, env: dict[str, str], api: AdminApi, workers: dict) -> None:
        self.cli = Cli(env)
        self.cli_json = self.cli.json
        self.api = api
        self.workers = workers

    def put_back(self) -> None:
        """Undo what a test changed, and wait until every worker (the same process as at
        the start) has acknowledged it and is idle, as a fresh fleet would be."""
        for action, body in PUT_BACK:
            self.api.call("POST", f"/workers/actions/{action}", json=body)
        for name, worker in self.workers.items():
            self.api.wait_for_worker(
                name,
                lambda view, pid=worker.pid: (
                    view["pid"] == pid
                    and view["state"] == "idle"
                    and view["applied_concurrency"] == 2
                    and view["queues"] == ["default"]
                    and view["applied_version"] == view["desired_version"]
                ),
                message=f"{name} back to -c 2 -q default, idle, acknowledged",
            )

    def last_audit_id(self) -> int:
        """The newest audit entry's id (0 for none): a test's own entries come after it."""
        newest = self.api.call("GET", "/audit", params={"limit": 1})
        return newest[0]["id"] if newest else 0


#: The tests on the shared fleet run in one pytest-xdist worker (``--dist loadgroup``), so
#: the fleet is started once, not once per worker.
SHARED = pytest.mark.xdist_group("control_targets_fleet")


@pytest.fixture(scope="module")
def shared_fleet(module_server, module_env, module_start_worker):
    """Three live workers shared by the module's tests: two at site a, one at site b, each
    labelled with its site. Starting a server and a fleet is most of each such test's
    time, so they are started once, side by side, and each awaited as ``start_worker``
    would (listed with its own pid, its desired state acknowledged); ``fleet`` puts them
    back before each test."""
    workers = {
        name: module_start_worker(
            name, concurrency=2, extra_args=("--label", f"site={site}"), wait=False
        )
        for name, site in SITES.items()
    }
    with AdminApi(module_server.url, module_env["EDGEFLEET_SECRET"]) as api:
        for name, worker in workers.items():
            api.wait_for_worker(
                name,
                lambda view, pid=worker.pid: (
                    view["pid"] == pid
                    and view["applied_concurrency"] is not None
                    and view["applied_version"] == view["desired_version"]
                ),
                message=f"{name} registered and acknowledged",
            )
        yield Fleet(module_env, api, workers)


@pytest.fixture
def fleet(shared_fleet, module_logs):
    """The shared fleet as it started: ``-c 2 -q default``, no maintenance, idle."""
    shared_fleet.put_back()
    return shared_fleet


def versions(admin_api) -> dict[str, int]:
    return {w["hostname"]: w["desired_version"] for w in admin_api.workers()}


@SHARED
def test_glob_selector_and_all_touch_exactly_their_workers(fleet):
    result = fleet.cli("set-worker-concurrency", "-H", "site-a-*", "-c", "4", "--wait", check=True)
    assert "site-a-1" in result.stdout and "site-a-2" in result.stdout
    assert "site-b-1" not in result.stdout
    views = {w["hostname"]: w for w in fleet.api.workers()}
    assert views["site-a-1"]["applied_concurrency"] == 4
    assert views["site-a-2"]["applied_concurrency"] == 4
    assert views["site-b-1"]["concurrency"] == 2

    changed = fleet.cli_json("set-worker-concurrency", "--selector", "site=b", "-c", "3", "--wait")
    assert changed["workers"] == ["site-b-1"]
    assert changed["not_acknowledged"] == []
    assert fleet.api.worker("site-b-1")["applied_concurrency"] == 3

    everything = fleet.cli_json("set-worker-concurrency", "--all", "-c", "5", "--wait")
    assert sorted(everything["workers"]) == ["site-a-1", "site-a-2", "site-b-1"]
    assert {w["applied_concurrency"] for w in fleet.api.workers()} == {5}


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


@SHARED
def test_bad_targets_are_refused_and_change_nothing(fleet):
    """One fleet for every case: each is refused, so each finds the fleet as it was."""
    before = versions(fleet.api)
    for args, message in BAD_TARGETS:
        result = fleet.cli("set-worker-concurrency", *args)
        assert result.returncode != 0, args
        assert message in squash(result.stderr), (args, result.stderr)
        assert versions(fleet.api) == before, args


@SHARED
def test_bad_bodies_over_the_api_are_4xx_json(fleet):
    before = versions(fleet.api)
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
        response = fleet.api.request("POST", "/workers/actions/set-concurrency", json=body)
        assert 400 <= response.status_code < 500, (body, response.text)
        assert "error" in response.json() and "detail" in response.json()
    assert versions(fleet.api) == before


@SHARED
def test_queues_add_remove_and_reset(fleet, job_recorder):
    fleet.cli("add-worker-queues", "-H", "site-b-1", "-q", "gpu,io", "--wait", check=True)
    assert fleet.api.worker("site-b-1")["queues"] == ["default", "gpu", "io"]

    job = fleet.api.submit(job_recorder.command(seconds=0), queue="gpu")
    assert fleet.api.wait_for_jobs([job])[job]["worker"] == "site-b-1"

    before = versions(fleet.api)
    refused = fleet.cli("remove-worker-queues", "-H", "site-b-1", "-q", "default,gpu,io")
    assert refused.returncode == 1
    assert "no queue" in squash(refused.stderr)
    assert versions(fleet.api) == before
    assert fleet.api.worker("site-b-1")["queues"] == ["default", "gpu", "io"]

    fleet.cli("remove-worker-queues", "-H", "site-b-1", "-q", "default", "--wait", check=True)
    assert fleet.api.worker("site-b-1")["queues"] == ["gpu", "io"]
    other = fleet.api.submit(job_recorder.command(seconds=0), queue="default")
    assert fleet.api.wait_for_jobs([other])[other]["worker"] in {"site-a-1", "site-a-2"}

    reset = fleet.cli_json("reset-worker-queues", "-H", "site-b-1", "--wait")
    assert reset["changes"][0]["new"] == ["default"]
    assert fleet.api.worker("site-b-1")["queues"] == ["default"]


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


@SHARED
def test_list_workers_filters(fleet):
    names = lambda rows: sorted(r["hostname"] for r in rows)  # noqa: E731
    assert names(fleet.cli_json("list-workers", "-H", "site-a-*")) == ["site-a-1", "site-a-2"]
    assert names(fleet.cli_json("list-workers", "--selector", "site=b")) == ["site-b-1"]
    assert names(fleet.cli_json("list-workers", "--state", "idle")) == [
        "site-a-1",
        "site-a-2",
        "site-b-1",
    ]
    assert names(fleet.cli_json("list-workers", "--state", "maintenance")) == []
    fleet.cli("add-worker-queues", "-H", "site-a-2", "-q", "gpu", "--wait", check=True)
    assert names(fleet.cli_json("list-workers", "--queues", "gpu,io")) == ["site-a-2"]
    bad = fleet.cli("list-workers", "-H", "site-[")
    assert bad.returncode == 1 and "never closed" in squash(bad.stderr)


@SHARED
def test_audit_records_actor_old_new_and_comment(fleet):
    mark = fleet.last_audit_id()  # the log is the module's: this test's entries come after
    fleet.cli("set-worker-concurrency", "-H", "site-a-1", "-c", "7", check=True)
    fleet.cli(
        "remote-edge-worker-request-maintenance", "-H", "site-b-1", "-c", "swap disk", check=True
    )
    log = fleet.cli_json("audit")
    entries = [e for e in log if e["id"] > mark]
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

    only_b = fleet.cli_json("audit", "-H", "site-b-1")
    assert only_b and {e["target"] for e in only_b} == {"site-b-1"}
    assert fleet.cli_json("audit", "--since", "2999-01-01T00:00:00") == []
    assert len(fleet.cli_json("audit", "--since", "10m")) == len(log)
    table = fleet.cli("audit", check=True).stdout
    assert "test-operator" in table and "swap disk" in table
    bad = fleet.cli("audit", "--since", "yesterday-ish")
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
