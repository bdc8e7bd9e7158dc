"""A run's result as the server's group writer of results takes it (see ``grouping``):
reports from many requests are judged together by ``dispatch.report_results``."""

from __future__ import annotations

from typing import NamedTuple

from edgefleet.contract import JobResult


class ResultReport(NamedTuple):
    """How one attempt ended, as the worker ``hostname`` (the authenticated one) reports it."""

    job_id: int
    hostname: str
    result: JobResult
