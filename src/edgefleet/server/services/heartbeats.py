"""A group of heartbeats, written and answered in one transaction (see ``grouping``)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from edgefleet.contract import DesiredState, Heartbeat, JobCancel
from edgefleet.db.session import Sessions
from edgefleet.errors import EdgefleetError
from edgefleet.server.services import dispatch, workers

Beat = tuple[str, Heartbeat]
Answer = tuple[DesiredState, list[JobCancel]]


def write(db: Sessions, beats: list[Beat]) -> list[Answer | EdgefleetError]:
    """Record the beats; answer each with its worker's desired state and the runs it must
    stop. A worker that runs nothing has nothing to stop (a job claimed for it meanwhile is
    covered by its next contact), so idle beats cost no query for orders."""
    with db.writer.begin() as connection:
        desired = workers.record_heartbeats(connection, beats)
        running = {
            hostname: beat.running_jobs
            for (hostname, beat), state in zip(beats, desired, strict=True)
            if beat.running_jobs and isinstance(state, DesiredState)
        }
        orders = {}
        if running:
            with Session(connection) as session:
                orders = dispatch.cancel_orders(session, running)
    return [
        state if isinstance(state, EdgefleetError) else (state, orders.get(hostname, []))
        for (hostname, _), state in zip(beats, desired, strict=True)
    ]
