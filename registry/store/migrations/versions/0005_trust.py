"""trust: identifier namespaces owned by organizations; the purpose of use (break-glass) on audit rows

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identifier_namespace",
        sa.Column("pattern", sa.String(length=255), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pattern"),
    )
    with op.batch_alter_table("identifier_namespace", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_identifier_namespace_org_id"), ["org_id"], unique=False)
    # plain ADD COLUMN (no table rebuild): the append-only triggers on audit_event stay as they are
    op.add_column("audit_event", sa.Column("purpose", sa.String(length=20), nullable=True))
    op.add_column("audit_event", sa.Column("purpose_reason", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_column("purpose_reason")
        batch_op.drop_column("purpose")
    op.drop_table("identifier_namespace")
