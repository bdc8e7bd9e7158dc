"""Helpers and fixtures for the job life-cycle and fault-injection tests.

- ``proxy``: a ``support.network.FaultProxy`` in front of the test's server, to play a flaky
  or slow site link.
- ``Jobs``: admin API calls the tests need beyond ``support.AdminApi`` (submit with options,
  waits that know the ``cancelled`` state, history).
- ``exactly_once``: the check behind "no job lost, none recorded twice".

Import the fixtures into a test module with
``from jobs_support import jobs_fixture, proxy_fixture  # noqa: F401`` (named ``jobs``, ``proxy``).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import AdminApi, JobRecorder, wait_until
from support.network import FaultProxy

FINISHED = frozenset({"success", "failed", "cancelled"})


# --- the network -------------------------------------------------------------------------


@pytest.fixture(name="proxy")
def proxy_fixture(server) -> Iterator[FaultProxy]:
    """A ``FaultProxy`` in front of the test's ``server``; start workers with
    ``extra_args=("--api-url", proxy.url)`` to put their link through it."""
    port = int(server.url.rsplit(":", 1)[1])
    fault = FaultProxy(port).start()
    yield fault
    fault.close()


# --- the admin API ------------------------------------------------------------------------


class Jobs:
    """The job calls the tests make, over an ``AdminApi``."""

    def __init__(self, api: AdminApi) -> None:
        self.api = api

    def submit(self, command: list[str], **options: Any) -> int:
        body = {"command": command, **options}
        return self.api.call("POST", "/jobs", expect=201, json=body)["id"]

    def get(self, job_id: int) -> dict[str, Any]:
        return self.api.call("GET", f"/jobs/{job_id}")

    def all(self) -> dict[int, dict[str, Any]]:
        return {j["id"]: j for j in self.api.call("GET", "/jobs", params={"limit": 10000})}

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self.api.call("POST", f"/jobs/{job_id}/cancel")

    def log(self, job_id: int) -> str:
        return self.api.call("GET", f"/jobs/{job_id}/logs")["log"]

    def events(self, job_id: int) -> list[str]:
        return [event["event"] for event in self.get(job_id)["history"]]

    def wait_state(self, job_id: int, *states: str, timeout: float = 60.0) -> dict[str, Any]:
        wanted = set(states) or FINISHED
        return wait_until(
            lambda: (view := self.get(job_id))["state"] in wanted and view,
            timeout=timeout,
            interval=0.1,
            message=lambda: f"job {job_id} to be {sorted(wanted)}: {self.get(job_id)}",
        )

    def wait_finished(self, ids: list[int], timeout: float = 120.0) -> dict[int, dict]:
        wanted = set(ids)

        def done() -> dict[int, dict] | None:
            views = {i: v for i, v in self.all().items() if i in wanted}
            finished = len(views) == len(wanted) and all(
                v["state"] in FINISHED for v in views.values()
            )
            return views if finished else None

        def pending() -> str:
            views = self.all()
            left = [(i, views[i]["state"]) for i in ids if views[i]["state"] not in FINISHED]
            return f"unfinished: {left[:20]}"

        return wait_until(done, timeout=timeout, interval=0.2, message=pending)

    def wait_event(self, job_id: int, event: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for ``event`` in the job's history; returns that history entry."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.get(job_id)["history"] if e["event"] == event), None)

        return wait_until(
            found,
            timeout=timeout,
            interval=0.1,
            message=lambda: f"event {event!r} of job {job_id}: {self.events(job_id)}",
        )


@pytest.fixture(name="jobs")
def jobs_fixture(admin_api: AdminApi) -> Jobs:
    return Jobs(admin_api)


# --- checks -------------------------------------------------------------------------------


def exactly_once(recorder: JobRecorder, views: dict[int, dict[str, Any]]) -> None:
    """Every job succeeded, each ran to its end exactly once, with the attempt the server
    recorded: nothing lost, nothing run or recorded twice."""
    runs = recorder.runs()
    finished = [r for r in runs if r.end is not None]
    counts = Counter(r.job for r in finished)
    assert set(counts) == set(views), f"lost: {sorted(set(views) - set(counts))}"
    assert all(n == 1 for n in counts.values()), (
        f"ran twice: {[j for j, n in counts.items() if n > 1]}"
    )
    for run in finished:
        view = views[run.job]
        assert view["state"] == "success", view
        assert (view["attempt"], view["worker"]) == (run.attempt, run.worker), (view, run)


def python_job(code: str) -> list[str]:
    return [sys.executable, "-I", "-c", code]


def spool_files(home: Path, hostname: str) -> list[Path]:
    outbox = home / "spool" / hostname / "outbox"
    return sorted(outbox.glob("*.json")) if outbox.exists() else []


def monotonic_since(start: float) -> float:
    return time.monotonic() - start
