"""Admin API for the fleet: list workers and change their desired state."""

from __future__ import annotations

from fastapi import APIRouter

from edgefleet.contract import ConcurrencySet, WorkerChange, WorkerView
from edgefleet.server.deps import AdminDep, ContextDep
from edgefleet.server.services import control, workers

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("", response_model=list[WorkerView])
def list_workers(context: ContextDep, identity: AdminDep):
    return workers.list_workers(context.db, context.settings.worker_offline_timeout)


@router.put("/{hostname}/concurrency", response_model=WorkerChange)
def set_concurrency(hostname: str, body: ConcurrencySet, context: ContextDep, identity: AdminDep):
    change = control.set_concurrency(context.db, hostname, body.concurrency, identity.subject)
    context.notifier.worker_changed(hostname)
    return change


@router.delete("/{hostname}/concurrency", response_model=WorkerChange)
def reset_concurrency(hostname: str, context: ContextDep, identity: AdminDep):
    """Hand the worker's concurrency back to its own ``--concurrency`` flag."""
    change = control.set_concurrency(context.db, hostname, None, identity.subject)
    context.notifier.worker_changed(hostname)
    return change
