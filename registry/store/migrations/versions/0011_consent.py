"""consent: the projection of the patients' sharing consent (paused hospitals, the separate consent for sensitive
items) and, per order checked, whether earlier results were withheld because sharing was paused

Revision ID: 0011_consent
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_consent"
down_revision = "0010_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "share_restriction",
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("consent_id", sa.String(length=64), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("patient_key", "org_id"),
    )
    op.create_table(
        "sensitive_share",
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("consent_id", sa.String(length=64), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("patient_key"),
    )
    # plain ADD COLUMN with a constant default: no table rewrite, and order_check stays append-only (its triggers
    # refuse UPDATE, which this is not)
    op.add_column("order_check", sa.Column("sharing_paused", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    # plain DROP COLUMN (SQLite 3.35+, PostgreSQL), not a batch copy: the table keeps its append-only triggers
    op.execute("ALTER TABLE order_check DROP COLUMN sharing_paused")
    op.drop_table("sensitive_share")
    op.drop_table("share_restriction")
