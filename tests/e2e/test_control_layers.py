"""A standing label rule and a schedule's open window steer a running worker: no restart,
acknowledged, explained."""

from __future__ import annotations

from collections.abc import Callable

from support import squash, wait_until


def test_a_label_rule_changes_a_running_workers_concurrency(
    server, start_worker, cli, cli_json, admin_api
):
    worker = start_worker("plant1-press", concurrency=2, extra_args=("--label", "site=plant1"))
    pid = admin_api.worker("plant1-press")["pid"]

    cli("concurrency-rule", "set", "--selector", "site=plant1", "-c", "3", check=True)

    def applied() -> dict | None:
        view = admin_api.worker("plant1-press")
        done = (
            view["applied_concurrency"] == 3 and view["applied_version"] == view["desired_version"]
        )
        return view if done else None

    view = wait_until(applied, message=lambda: worker.log_tail())
    assert (view["pid"], view["concurrency_source"], view["concurrency_rule"]) == (
        pid,
        "label-rule",
        "site=plant1",
    )
    assert "by remote request (label-rule)" in worker.log_text()

    explained = cli_json("workers", "explain", "-H", "plant1-press", "-o", "json")
    assert [row["layer"] for row in explained["layers"] if row["in_force"]] == ["label-rule"]
    assert explained["applied_concurrency"] == 3
    table = cli("workers", "explain", "-H", "plant1-press", check=True).stdout
    assert "from label-rule site=plant1" in table
    assert "label-rule" in cli("list-workers", check=True).stdout

    refused = cli("concurrency-rule", "remove", "--selector", "site=plant9")
    assert refused.returncode == 1 and "no concurrency rule for site=plant9" in squash(
        refused.stderr
    )
    both = cli("concurrency-rule", "set", "--selector", "site=plant1", "--default", "-c", "3")
    assert both.returncode == 2 and "exactly one" in both.stderr
    assert [r["rule"] for r in admin_api.call("GET", "/concurrency-rules")] == ["site=plant1"]


def test_a_schedule_window_open_now_steers_a_running_worker_and_hands_back(
    server, start_worker, cli, cli_json, admin_api
):
    worker = start_worker("night-press", concurrency=2, extra_args=("--label", "site=night"))
    pid = admin_api.worker("night-press")["pid"]

    def settled_at(value: int) -> Callable[[], dict | None]:
        def check() -> dict | None:
            view = admin_api.worker("night-press")
            done = view["applied_concurrency"] == value
            return view if done and view["applied_version"] == view["desired_version"] else None

        return check

    added = cli_json(
        "schedule", "add", "--selector", "site=night", "--cron", "* * * * *", "--for", "1h",
        "-c", "3", "--timezone", "Europe/Berlin", "--name", "shift", "-o", "json",
    )  # fmt: skip
    assert added["schedule"]["active"] and added["changes"]["workers"] == ["night-press"]
    view = wait_until(settled_at(3), message=lambda: worker.log_tail())
    assert (view["pid"], view["concurrency_source"], view["concurrency_schedule"]) == (
        pid,
        "schedule",
        "shift",
    )
    assert "schedule" in cli("list-workers", check=True).stdout
    listed = cli("schedule", "list", check=True).stdout
    assert "shift" in listed and "Europe/Berlin" in listed and "until" in listed

    bad = cli("schedule", "add", "--all", "--cron", "0 22 * * *", "--for", "1h", "-c", "3",
              "--timezone", "Mars/Olympus")  # fmt: skip
    assert bad.returncode == 2 and "unknown time zone" in bad.stderr

    cli("schedule", "remove", "shift", check=True)
    view = wait_until(settled_at(2), message=lambda: worker.log_tail())
    assert (view["pid"], view["concurrency_source"]) == (pid, "flag")
    assert admin_api.call("GET", "/schedules") == []
