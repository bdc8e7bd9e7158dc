"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from edgefleet.db.fingerprint import SchemaChange
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}

#: What this revision changes in the shape of the schema (tables, columns, named indexes), so
#: that databases built before version tracking can be recognised; e.g.
#: SchemaChange(add_columns={"edge_job": "timeout"}, add_indexes={"edge_job": "ix_edge_job_x"}).
#: tests/migrations checks it against what upgrade() really builds.
fingerprint = SchemaChange()


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
