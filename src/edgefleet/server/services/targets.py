"""Turning a control request's target (name, glob, labels, all) into worker rows."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, select
from sqlalchemy.orm import Session

from edgefleet.contract import Target
from edgefleet.db.models import Worker
from edgefleet.errors import InvalidRequest, NotFound
from edgefleet.fleet_rules import check_glob, is_glob, matches
from edgefleet.parsing import format_selector


def describe(target: Target) -> str:
    if target.all:
        return "all workers"
    if target.selector is not None:
        return "selector " + format_selector(target.selector)
    return repr(target.edge_hostname)


def resolve(session: Session, target: Target, *, lock: bool = True) -> list[Worker]:
    """The targeted workers in hostname order, locked for update, or a 4xx explaining why
    there are none.

    Only the matched rows are locked, and always in hostname order: a bulk change leaves the
    heartbeats and claims of the workers it does not target alone, and two bulk changes over
    overlapping workers queue up behind each other instead of deadlocking.
    """
    return _resolve(session, target, lock, select(Worker), lambda q: list(session.scalars(q)))


def resolve_rows(
    session: Session, target: Target, columns: Sequence[ColumnElement[Any]], *, lock: bool = True
) -> list[Row[Any]]:
    """As ``resolve``, the same rows locked the same way, as plain rows of ``columns`` (which
    include ``hostname``, and ``labels`` for a selector): a fleet-wide change reads a
    thousand of them, through the session's connection (no ORM loading)."""

    def fetch(query: Select[Any]) -> list[Any]:
        return session.connection().execute(query).all()

    return _resolve(session, target, lock, select(*columns), fetch)


Fetch = Callable[[Select[Any]], list[Any]]


def _resolve(session: Session, target: Target, lock: bool, base: Select[Any], fetch: Fetch):
    given = sum([target.edge_hostname is not None, target.selector is not None, target.all])
    if given != 1:
        raise InvalidRequest("name exactly one target: edge_hostname, selector or all")
    if target.selector is not None and not target.selector:
        raise InvalidRequest("empty selector: give at least one KEY=VALUE label")
    name = target.edge_hostname
    if name is not None and not is_glob(name):
        query = base.where(Worker.hostname == name)
        found = fetch(query.with_for_update() if lock else query)
        if not found:
            raise NotFound(f"no worker named {name!r}")
        return found
    if name is not None:
        check_glob(name)
    if target.all:
        query = base.order_by(Worker.hostname)
        workers = fetch(query.with_for_update() if lock else query)
    else:
        workers = _matched(session, target, lock, base, fetch)
    if not workers:
        raise NotFound(f"no worker matches {describe(target)}")
    return workers


#: Rows locked per statement (a bound on its parameters), in hostname order throughout.
LOCK_CHUNK = 1000


def _matched(session: Session, target: Target, lock: bool, base: Select[Any], fetch: Fetch):
    """Workers a glob or selector matches: candidates are read without a lock (narrowed in
    SQL), the matches are locked in hostname order and checked again as locked (a worker
    whose labels changed meanwhile is left out)."""
    candidates = session.execute(
        select(Worker.hostname, Worker.labels)
        .where(*narrowing(target.edge_hostname, target.selector))
        .order_by(Worker.hostname)
    ).all()
    pattern, selector = target.edge_hostname, target.selector
    names = sorted(name for name, labels in candidates if matches(name, labels, pattern, selector))
    workers: list[Any] = []
    for start in range(0, len(names), LOCK_CHUNK):
        query = (
            base.where(Worker.hostname.in_(names[start : start + LOCK_CHUNK]))
            .order_by(Worker.hostname)
            .execution_options(populate_existing=True)  # the values as locked
        )
        workers += fetch(query.with_for_update() if lock else query)
    if selector is None:  # the rows may have no labels: a glob's match needs none
        return [w for w in workers if matches(w.hostname, None, pattern)]
    return [w for w in workers if matches(w.hostname, w.labels, pattern, selector)]


def narrowing(pattern: str | None, selector: dict[str, str] | None) -> list[ColumnElement[bool]]:
    """SQL conditions every worker a name glob and a label selector match meets (more rows
    may meet them: the match itself is checked in Python): the glob's literal prefix, and
    each selected label's value."""
    conditions: list[ColumnElement[bool]] = []
    if pattern is not None:
        prefix = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
        if prefix:
            conditions.append(Worker.hostname.startswith(prefix, autoescape=True))
    for key, value in (selector or {}).items():
        conditions.append(Worker.labels[key].as_string() == value)
    return conditions
