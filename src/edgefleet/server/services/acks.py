"""Acknowledgements that ride on a worker's long-poll, written in groups (see ``grouping``).

A fleet-wide change wakes every long-poll at once, and each worker's next long-poll carries
the version it applied: a thousand acknowledgements within a moment, which cost one
transaction per group instead of one per worker (and no heartbeat of their own).
"""

from __future__ import annotations

from edgefleet.db.session import Sessions
from edgefleet.server.services.workers import Ack, record_acks


def write(db: Sessions, acks: list[Ack]) -> list[None]:
    with db.writer.begin() as connection:
        record_acks(connection, acks)
    return [None] * len(acks)
