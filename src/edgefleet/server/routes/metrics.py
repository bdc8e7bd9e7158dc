"""Prometheus metrics, read from the database at scrape time so every replica tells the truth.

They name every worker, so a viewer's token is needed (Prometheus sends it with
``authorization: {credentials: ...}``) unless ``EDGEFLEET_PUBLIC_METRICS`` opens them.
prometheus_client is loaded at the first scrape, not by every server that is never scraped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from sqlalchemy import func, select

from edgefleet.db.models import Job
from edgefleet.server.context import ServerContext
from edgefleet.server.deps import BearerRole, ContextDep
from edgefleet.server.services import workers

if TYPE_CHECKING:
    from prometheus_client.core import Metric

router = APIRouter(tags=["health"])


class FleetCollector:
    def __init__(self, context: ServerContext) -> None:
        self._context = context

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        views = workers.list_workers(
            self._context.db, self._context.settings.worker_offline_timeout
        )
        by_state = GaugeMetricFamily(
            "edgefleet_workers", "Workers by observed state", labels=["state"]
        )
        counts: dict[str, int] = {}
        for view in views:
            counts[view.state] = counts.get(view.state, 0) + 1
        for state, count in sorted(counts.items()):
            by_state.add_metric([state], count)
        yield by_state

        desired = GaugeMetricFamily(
            "edgefleet_worker_concurrency", "Desired concurrency", labels=["hostname"]
        )
        applied = GaugeMetricFamily(
            "edgefleet_worker_applied_concurrency",
            "Concurrency the worker applied",
            labels=["hostname"],
        )
        running = GaugeMetricFamily(
            "edgefleet_worker_jobs_running", "Jobs running on the worker", labels=["hostname"]
        )
        lag = GaugeMetricFamily(
            "edgefleet_worker_versions_behind",
            "Desired-state versions the worker has not acknowledged yet",
            labels=["hostname"],
        )
        for view in views:
            desired.add_metric([view.hostname], view.concurrency)
            applied.add_metric([view.hostname], view.applied_concurrency or 0)
            running.add_metric([view.hostname], view.jobs_running)
            lag.add_metric([view.hostname], max(0, view.desired_version - view.applied_version))
        yield from (desired, applied, running, lag)

        jobs = GaugeMetricFamily("edgefleet_jobs", "Jobs by state", labels=["state"])
        with self._context.db() as session:
            for state, count in session.execute(
                select(Job.state, func.count(Job.id)).group_by(Job.state)
            ):
                jobs.add_metric([state], count)
        yield jobs


_viewer = BearerRole("viewer")


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, context: ContextDep) -> Response:
    if not context.settings.public_metrics:
        await _viewer(request)
    return await context.run(_scrape, context)


def _scrape(context: ServerContext) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(context))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
