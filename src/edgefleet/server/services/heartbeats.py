"""A group of heartbeats, written and answered in one transaction (see ``grouping``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from edgefleet.contract import DesiredState, Heartbeat, JobCancel
from edgefleet.db.session import Sessions
from edgefleet.errors import EdgefleetError
from edgefleet.server.services import dispatch, workers


@dataclass(frozen=True)
class Beat:
    """One heartbeat, with the worker it came from (the authenticated name, not the body's)."""

    hostname: str
    heartbeat: Heartbeat


@dataclass(frozen=True)
class BeatAnswer:
    """What a beat is answered with: its worker's desired state and the runs it must stop."""

    desired: DesiredState
    cancel: list[JobCancel]


def write(db: Sessions, beats: list[Beat]) -> list[BeatAnswer | EdgefleetError]:
    """Record the beats; answer each with its worker's desired state and the runs it must
    stop. A worker that runs nothing has nothing to stop (a job claimed for it meanwhile is
    covered by its next contact), so idle beats cost no query for orders."""
    with db.writer.begin() as connection:
        desired = workers.record_heartbeats(connection, beats)
        running = {
            beat.hostname: beat.heartbeat.running_jobs
            for beat, state in zip(beats, desired, strict=True)
            if beat.heartbeat.running_jobs and isinstance(state, DesiredState)
        }
        orders = {}
        if running:
            with Session(connection) as session:
                orders = dispatch.cancel_orders(session, running)
    return [
        state
        if isinstance(state, EdgefleetError)
        else BeatAnswer(state, orders.get(beat.hostname, []))
        for beat, state in zip(beats, desired, strict=True)
    ]
