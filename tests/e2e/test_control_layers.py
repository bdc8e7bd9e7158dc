"""A standing label rule steers a running worker: no restart, acknowledged, explained."""

from __future__ import annotations

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
