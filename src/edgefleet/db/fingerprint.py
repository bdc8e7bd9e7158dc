"""Schema fingerprints: recognise which revision an untracked database was built at.

Databases created before version tracking have edgefleet's tables but no ``alembic_version``.
Stamping such a database at head would skip every migration it never had, so instead its live
shape (tables, their columns and named indexes) is compared with the shape each revision
leaves behind, and the matching revision is stamped before upgrading from there.

Each migration module declares what it changes as ``fingerprint = SchemaChange(...)``; the
shape at a revision is the sum of the changes up to it. A new revision that adds a column
needs one line, e.g. ``fingerprint = SchemaChange(add_columns={"edge_job": "timeout"})``.
``tests/migrations`` checks every fingerprint against the schema its migration really builds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection, inspect

#: Tables edgefleet owns; other tables in a shared database are none of its business.
TABLE_PREFIX = "edge_"

#: table -> names, as a list or as one string of names separated by spaces.
Names = Mapping[str, Iterable[str] | str]


def _frozen(names: Names) -> dict[str, frozenset[str]]:
    return {
        table: frozenset(items.split() if isinstance(items, str) else items)
        for table, items in names.items()
    }


@dataclass(frozen=True)
class SchemaChange:
    """What one revision does to the shape of the schema (names only, dialect-neutral)."""

    add_tables: Names = field(default_factory=dict)  # table -> all its columns
    drop_tables: Iterable[str] = ()
    add_columns: Names = field(default_factory=dict)
    drop_columns: Names = field(default_factory=dict)
    add_indexes: Names = field(default_factory=dict)  # table -> index names
    drop_indexes: Names = field(default_factory=dict)


@dataclass(frozen=True)
class Shape:
    """Tables with their columns and named indexes."""

    columns: dict[str, frozenset[str]] = field(default_factory=dict)
    indexes: dict[str, frozenset[str]] = field(default_factory=dict)

    def apply(self, change: SchemaChange) -> Shape:
        columns = dict(self.columns)
        indexes = dict(self.indexes)
        for table in change.drop_tables:
            columns.pop(table, None)
            indexes.pop(table, None)
        columns.update(_frozen(change.add_tables))
        for table, names in _frozen(change.add_columns).items():
            columns[table] = columns.get(table, frozenset()) | names
        for table, names in _frozen(change.drop_columns).items():
            columns[table] = columns.get(table, frozenset()) - names
        for table, names in _frozen(change.add_indexes).items():
            indexes[table] = indexes.get(table, frozenset()) | names
        for table, names in _frozen(change.drop_indexes).items():
            indexes[table] = indexes.get(table, frozenset()) - names
        return Shape(columns, {t: n for t, n in indexes.items() if n and t in columns})

    def differences(self, other: Shape) -> list[str]:
        """How ``other`` (the live schema) departs from this expected shape, for messages."""
        found: list[str] = []
        for table in sorted(self.columns.keys() - other.columns.keys()):
            found.append(f"missing table {table}")
        for table in sorted(other.columns.keys() - self.columns.keys()):
            found.append(f"unexpected table {table}")
        for table in sorted(self.columns.keys() & other.columns.keys()):
            found += _named_diff(table, "column", self.columns[table], other.columns[table])
            found += _named_diff(
                table,
                "index",
                self.indexes.get(table, frozenset()),
                other.indexes.get(table, frozenset()),
            )
        return found


def _named_diff(table: str, kind: str, expected: frozenset[str], live: frozenset[str]) -> list:
    return [f"missing {kind} {table}.{name}" for name in sorted(expected - live)] + [
        f"unexpected {kind} {table}.{name}" for name in sorted(live - expected)
    ]


def live_shape(connection: Connection) -> Shape:
    """The shape of edgefleet's tables as the database has them now."""
    inspector = inspect(connection)
    columns: dict[str, frozenset[str]] = {}
    indexes: dict[str, frozenset[str]] = {}
    for table in inspector.get_table_names():
        if not table.startswith(TABLE_PREFIX):
            continue
        columns[table] = frozenset(c["name"] for c in inspector.get_columns(table))
        names = frozenset(
            i["name"]
            for i in inspector.get_indexes(table)
            # PostgreSQL lists the index behind a UNIQUE constraint too; SQLite does not.
            if i.get("name") and not i.get("duplicates_constraint")
        )
        if names:
            indexes[table] = names
    return Shape(columns, indexes)
