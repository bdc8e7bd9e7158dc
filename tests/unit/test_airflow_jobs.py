"""How an Airflow task becomes an edgefleet job and how the job's state reads back
(``edgefleet.airflow.jobs``: plain data, no Airflow needed)."""

from __future__ import annotations

import pytest

from edgefleet.airflow.jobs import (
    BOOTSTRAP,
    TIMEOUT_GRACE,
    WORKLOAD_ENV,
    TaskFacts,
    UnsubmittableTask,
    job_request,
    outcome,
)
from edgefleet.contract import JobSubmit

pytestmark = pytest.mark.same_on_every_backend


def facts(**changes) -> TaskFacts:
    base = {
        "ti_id": "0192",
        "try_number": 2,
        "queue": "default",
        "pool_slots": 3,
        "priority_weight": 5,
        "execution_timeout": 30.0,
        "workload_json": '{"token": "t"}',
    }
    return TaskFacts(**(base | changes))


def test_a_task_maps_onto_a_job_the_contract_accepts():
    request = job_request(facts(), "/opt/airflow/bin/python")
    assert JobSubmit.model_validate(request)
    assert request["command"] == ["/opt/airflow/bin/python", "-c", BOOTSTRAP]
    assert "execute_workload" in BOOTSTRAP
    assert (request["queue"], request["slots"], request["priority"]) == ("default", 3, 5)
    assert request["timeout"] == 30.0 + TIMEOUT_GRACE
    assert request["retries"] == 0
    assert request["secret_env"] == {WORKLOAD_ENV: '{"token": "t"}'}
    assert request["key"] == "airflow:0192:2"
    assert "env" not in request  # the workload (with its token) is never in listings


def test_out_of_range_values_are_clipped_and_no_timeout_means_none():
    request = job_request(
        facts(pool_slots=5000, priority_weight=-99999, execution_timeout=None), "python3"
    )
    assert JobSubmit.model_validate(request)
    assert (request["slots"], request["priority"], request["timeout"]) == (1024, -1000, None)


def test_a_queue_edgefleet_cannot_name_is_refused():
    with pytest.raises(UnsubmittableTask, match="queue 'my queue'"):
        job_request(facts(queue="my queue"), "python3")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"id": 1, "state": "queued"}, None),
        ({"id": 1, "state": "running", "worker": "w"}, None),
        ({"id": 1, "state": "success", "exit_code": 0}, (True, "")),
        (
            {"id": 7, "state": "failed", "worker": "w1", "reason": "worker w1 lost"},
            (False, "edgefleet job 7 failed on w1: worker w1 lost"),
        ),
        (
            {"id": 8, "state": "failed", "worker": None, "reason": None, "exit_code": 3},
            (False, "edgefleet job 8 failed: exit code 3"),
        ),
        (
            {"id": 9, "state": "cancelled", "reason": "cancelled by ops"},
            (False, "edgefleet job 9 cancelled: cancelled by ops"),
        ),
    ],
)
def test_job_states_read_back_as_task_outcomes(status, expected):
    ended = outcome(status)
    assert (ended and (ended.succeeded, ended.reason)) == expected
