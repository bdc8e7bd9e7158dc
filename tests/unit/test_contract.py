"""The wire contract refuses what it does not fully understand: strict ints, bounds, no extras."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgefleet.contract import (
    ConcurrencySet,
    FetchRequest,
    Heartbeat,
    JobRelease,
    JobResult,
    JobSubmit,
    LogChunk,
    Registration,
)
from edgefleet.settings import MAX_CONCURRENCY

pytestmark = pytest.mark.same_on_every_backend  # no database: the SQLite pass runs it

NOT_A_CONCURRENCY = [0, -1, MAX_CONCURRENCY + 1, 10**30, "4", "abc", 2.5, 4.0, True, None, [4]]


@pytest.mark.parametrize("value", [1, 7, MAX_CONCURRENCY])
def test_concurrency_accepts_integers_within_bounds(value):
    assert ConcurrencySet(concurrency=value).concurrency == value
    assert ConcurrencySet.model_validate_json(f'{{"concurrency": {value}}}').concurrency == value


@pytest.mark.parametrize("value", NOT_A_CONCURRENCY)
def test_concurrency_refuses_non_integers_and_out_of_bounds(value):
    with pytest.raises(ValidationError):
        ConcurrencySet(concurrency=value)
    with pytest.raises(ValidationError):
        ConcurrencySet.model_validate({"concurrency": value})


@pytest.mark.parametrize(
    "text", ['{"concurrency": "4"}', '{"concurrency": 4.0}', '{"concurrency": true}', "{}", "[4]"]
)
def test_concurrency_json_is_strict(text):
    with pytest.raises(ValidationError):
        ConcurrencySet.model_validate_json(text)


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (ConcurrencySet, {"concurrency": 3}),
        (FetchRequest, {"instance_id": "i", "free_slots": 1}),
        (JobRelease, {"instance_id": "i", "attempt": 1}),
        (JobSubmit, {"command": ["true"]}),
        (LogChunk, {"attempt": 1, "seq": 0, "data": "x"}),
        (
            Heartbeat,
            {"instance_id": "i", "state": "idle", "applied_version": 1, "applied_concurrency": 2},
        ),
        (JobResult, {"instance_id": "i", "attempt": 1, "state": "success"}),
    ],
)
def test_request_bodies_forbid_unknown_fields(model, body):
    model.model_validate(body)
    with pytest.raises(ValidationError) as error:
        model.model_validate({**body, "surprise": 1})
    assert "surprise" in str(error.value)


def _heartbeat(**changes):
    body = {"instance_id": "i", "state": "idle", "applied_version": 1, "applied_concurrency": 2}
    return Heartbeat.model_validate({**body, **changes})


@pytest.mark.parametrize(
    "changes",
    [
        {"applied_concurrency": 0},
        {"applied_concurrency": MAX_CONCURRENCY + 1},
        {"applied_concurrency": "2"},
        {"applied_version": -1},
        {"applied_version": "1"},
        {"state": "dancing"},
        {"running_jobs": list(range(MAX_CONCURRENCY + 1))},
    ],
)
def test_heartbeat_is_validated(changes):
    with pytest.raises(ValidationError):
        _heartbeat(**changes)


def test_heartbeat_defaults():
    assert _heartbeat().running_jobs == []


@pytest.mark.parametrize("free_slots", [0, -1, MAX_CONCURRENCY + 1, "1", 1.5])
def test_fetch_request_bounds(free_slots):
    with pytest.raises(ValidationError):
        FetchRequest(instance_id="i", free_slots=free_slots)


def _registration(**changes):
    body = {
        "instance_id": "a" * 32,
        "concurrency": 2,
        "queues": ["default"],
        "heartbeat_interval": 1.0,
    }
    return Registration.model_validate({**body, **changes})


@pytest.mark.parametrize(
    "changes",
    [
        {"instance_id": "short"},
        {"concurrency": 0},
        {"concurrency": "2"},
        {"queues": []},
        {"queues": ["has space"]},
        {"queues": [""]},
        {"heartbeat_interval": 0},
        {"heartbeat_interval": 3601},
    ],
)
def test_registration_is_validated(changes):
    _registration()
    with pytest.raises(ValidationError):
        _registration(**changes)


@pytest.mark.parametrize(
    "body",
    [
        {"command": []},
        {"command": "true"},
        {"command": ["true"], "queue": ""},
        {"command": ["true"], "queue": "a b"},
        {"command": ["true"], "priority": 1001},
        {"command": ["true"], "priority": "1"},
    ],
)
def test_job_submit_is_validated(body):
    with pytest.raises(ValidationError):
        JobSubmit.model_validate(body)


def test_job_submit_defaults():
    job = JobSubmit.model_validate({"command": ["echo", "hi"]})
    assert (job.queue, job.priority) == ("default", 0)


def test_a_reason_naming_a_huge_argument_is_cut_to_what_the_server_takes():
    from edgefleet.contract import MAX_REASON_LENGTH, JobResult, clip_reason

    reason = clip_reason(f"could not start {'x' * 65536!r}: No such file or directory")
    assert len(reason) == MAX_REASON_LENGTH and reason.endswith("...")
    JobResult(instance_id="i" * 8, attempt=1, state="failed", reason=reason)
    assert clip_reason("short") == "short" and clip_reason(None) is None
