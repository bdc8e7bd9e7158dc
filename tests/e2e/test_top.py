"""``edgefleet top`` and the readable job table against a real server and worker."""

from __future__ import annotations

import re
import shlex

import pytest

from support.cli import describe

pytestmark = pytest.mark.same_on_every_backend  # the CLI's rendering of a fleet


def test_top_once_shows_the_fleet_to_a_viewer(cli, server, admin_api, start_worker):
    start_worker("top-edge", concurrency=3, queues="default")
    admin_api.set_concurrency("top-edge", 2).raise_for_status()
    command = ["echo", "hello world"]
    for _ in range(2):
        admin_api.submit(command, queue="nobody-serves")
    viewer = admin_api.call(
        "POST", "/tokens", expect=201, json={"name": "top-viewer", "role": "viewer"}
    )["token"]
    admin_api.wait_applied("top-edge", 2)

    as_viewer = {**cli.env, "EDGEFLEET_TOKEN": viewer}
    frame, table = cli.run_all([["top", "--once"], ["jobs", "list"]], env=as_viewer)
    unreachable = cli("top", "--once", env={**as_viewer, "EDGEFLEET_API_URL": "http://127.0.0.1:9"})

    assert frame.returncode == 0, describe(frame)
    rows = [line.split() for line in frame.stdout.splitlines()]
    assert ["workers:", "1", "(idle", "1)"] in rows, frame.stdout
    worker = next(row for row in rows if row and row[0] == "top-edge")
    # hostname, state, desired, applied, source, slots used/concurrency, jobs, queues
    assert worker == ["top-edge", "idle", "2", "2", "operator", "0/2", "0", "default"]
    queue = next(row for row in rows if row and row[0] == "nobody-serves")
    assert queue[:4] == ["nobody-serves", "2", "0", "-"]  # no cap: "-"
    change = next(row for row in rows if "concurrency" in row and "->" in row)
    assert change[change.index("concurrency") + 1 :][:3] == ["3", "->", "2"], frame.stdout

    assert table.returncode == 0, describe(table)
    assert shlex.join(command) in table.stdout, table.stdout
    assert " ago" in table.stdout
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:", table.stdout)  # ages, not ISO times

    assert unreachable.returncode == 1, describe(unreachable)
    assert unreachable.stdout.strip().startswith("server unavailable: cannot reach")
    assert len(unreachable.stdout.strip().splitlines()) == 1
    assert "Traceback" not in unreachable.stderr
