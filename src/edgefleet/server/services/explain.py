"""Why a worker runs at the concurrency it does: every layer, highest first, and which one
is in force (``edgefleet workers explain``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from edgefleet import fleet_rules
from edgefleet.contract import ConcurrencyExplained, LayerView
from edgefleet.db.models import Worker
from edgefleet.parsing import format_selector
from edgefleet.server.services import layers
from edgefleet.server.services.schedules import stamp
from edgefleet.server.services.workers import get_worker, rule_in_force, schedule_in_force

#: Why the layer in force wins, by its source.
WHY = {
    fleet_rules.OPERATOR: "an operator override wins over every standing rule until it is "
    "reset (set-worker-concurrency --reset)",
    fleet_rules.SCHEDULE: "no operator override, and a schedule's window is open for the "
    "worker's labels (schedules rank above label rules; of several open windows the most "
    "specific selector wins, then the latest start)",
    fleet_rules.LABEL_RULE: "no operator override and no open schedule window; of the label "
    "rules matching the worker's labels this one has the most keys (the newest among as many)",
    fleet_rules.FLEET_DEFAULT: "no operator override, no open schedule window and no label rule "
    "matches the worker's labels, so the fleet default applies",
    fleet_rules.FLAG: "no operator override and no standing rule, so the worker's own -c "
    "flag decides",
}


def _label_note(worker: Worker, snapshot: layers.Snapshot) -> str:
    found = fleet_rules.matching_rules(worker.labels, snapshot.rules)
    if not found:
        labels = format_selector(worker.labels or {}) or "none"
        return f"no label rule matches the worker's labels ({labels})"
    shown = ", ".join(f"{rule.text} ({rule.concurrency})" for rule in found[1:])
    keys = len(found[0].selector)
    note = f"most specific matching rule ({keys} {'key' if keys == 1 else 'keys'})"
    return note + (f"; also matching: {shown}" if shown else "")


def _schedule_note(worker: Worker, snapshot: layers.Snapshot) -> str:
    found = layers.matching_windows(worker, snapshot)
    if not found:
        return "no schedule's window is open for the worker's labels"
    first = found[0]
    note = f"window of schedule {first.name} open until {stamp(first.end)}"
    shown = ", ".join(f"{w.name} ({w.concurrency})" for w in found[1:])
    return note + (f"; also open: {shown}" if shown else "")


def _operator_note(override: int | None, until: datetime | None) -> str:
    if override is None:
        return "no operator override"
    ends = f", until {stamp(until)}" if until else ", until reset"
    return f"set by an operator (set-worker-concurrency){ends}"


def _why(source: str, until: datetime | None) -> str:
    if source == fleet_rules.OPERATOR and until is not None:
        return (
            "an operator override wins over every standing rule until it ends by itself at "
            f"{stamp(until)} (or is reset with set-worker-concurrency --reset); "
            "the layer below then takes over"
        )
    return WHY.get(source, f"the {source} layer is the highest with a value")


def _note(name: str, layer: layers.Layer | None, worker: Worker, snap: layers.Snapshot) -> str:
    if name == fleet_rules.SCHEDULE:
        return _schedule_note(worker, snap)
    if name == fleet_rules.LABEL_RULE:
        return _label_note(worker, snap)
    if name == fleet_rules.FLEET_DEFAULT:
        return "for every worker" if layer else "no fleet default is set"
    return layer.describe() if layer else f"no {name} applies"


def explain(db: sessionmaker[Session], hostname: str) -> ConcurrencyExplained:
    with db() as session:
        worker = get_worker(session, hostname)
        snapshot = layers.load(session)
        source = fleet_rules.concurrency_source(worker)
        override = fleet_rules.concurrency_override(worker)  # one past its end is gone
        until = fleet_rules.concurrency_until(worker)
        rows = [
            LayerView(
                layer=fleet_rules.OPERATOR,
                concurrency=override,
                in_force=source == fleet_rules.OPERATOR,
                note=_operator_note(override, until),
            )
        ]
        for name, candidate in layers.CANDIDATES:
            layer = candidate(worker, snapshot)
            rows.append(
                LayerView(
                    layer=name,
                    concurrency=None if layer is None else layer.concurrency,
                    rule=None if layer is None else layer.rule,
                    in_force=source == name,
                    note=_note(name, layer, worker, snapshot),
                )
            )
        rows.append(
            LayerView(
                layer=fleet_rules.FLAG,
                concurrency=worker.flag_concurrency,
                in_force=source == fleet_rules.FLAG,
                note="the worker's own -c flag, from its last start",
            )
        )
        return ConcurrencyExplained(
            hostname=worker.hostname,
            concurrency=fleet_rules.concurrency(worker),
            concurrency_source=source,
            concurrency_rule=rule_in_force(worker),
            concurrency_schedule=schedule_in_force(worker),
            concurrency_until=until,
            why=_why(source, until),
            layers=rows,
            applied_concurrency=worker.applied_concurrency,
            desired_version=worker.desired_version,
            applied_version=worker.applied_version,
            converged=worker.applied_version == worker.desired_version,
        )
