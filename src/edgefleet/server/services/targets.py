"""Turning a control request's target (name, glob, labels, all) into worker rows."""

from __future__ import annotations

import fnmatch
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.contract import Target
from edgefleet.db.models import Worker
from edgefleet.errors import InvalidRequest, NotFound

GLOB_CHARS = frozenset("*?[")
_GLOB_ALLOWED = re.compile(r"^[A-Za-z0-9_.\-*?\[\]!]+$")


def is_glob(name: str) -> bool:
    return any(char in GLOB_CHARS for char in name)


def check_glob(pattern: str) -> None:
    """Refuse patterns that could never name a worker or whose brackets don't close."""
    if not _GLOB_ALLOWED.match(pattern):
        raise InvalidRequest(
            f"bad hostname pattern {pattern!r}: use letters, digits, '.', '-', '_' "
            "and the wildcards * ? [...]"
        )
    depth = 0
    for char in pattern:
        if char == "[":
            if depth:
                raise InvalidRequest(f"bad hostname pattern {pattern!r}: nested '['")
            depth = 1
        elif char == "]" and depth:
            depth = 0
    if depth:
        raise InvalidRequest(f"bad hostname pattern {pattern!r}: '[' is never closed")


def matches_labels(worker: Worker, selector: dict[str, str]) -> bool:
    labels = worker.labels or {}
    return all(labels.get(key) == value for key, value in selector.items())


def describe(target: Target) -> str:
    if target.all:
        return "all workers"
    if target.selector is not None:
        return "selector " + ",".join(f"{k}={v}" for k, v in target.selector.items())
    return repr(target.edge_hostname)


def resolve(session: Session, target: Target, *, lock: bool = True) -> list[Worker]:
    """The targeted workers, locked for update, or a 4xx explaining why there are none."""
    given = sum([target.edge_hostname is not None, target.selector is not None, target.all])
    if given != 1:
        raise InvalidRequest("name exactly one target: edge_hostname, selector or all")
    if target.selector is not None and not target.selector:
        raise InvalidRequest("empty selector: give at least one KEY=VALUE label")
    name = target.edge_hostname
    if name is not None and not is_glob(name):
        worker = session.get(Worker, name, with_for_update=lock or None)
        if worker is None:
            raise NotFound(f"no worker named {name!r}")
        return [worker]
    if name is not None:
        check_glob(name)
    query = select(Worker).order_by(Worker.hostname)
    if lock:
        query = query.with_for_update()
    workers = [
        worker
        for worker in session.scalars(query)
        if (name is None or fnmatch.fnmatchcase(worker.hostname, name))
        and (target.selector is None or matches_labels(worker, target.selector))
    ]
    if not workers:
        raise NotFound(f"no worker matches {describe(target)}")
    return workers
